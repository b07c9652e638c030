package guest

import (
	"os"
	"os/exec"
	"testing"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// newTestReaper is a Reaper without the SIGCHLD loop of NewReaper, which
// would reap every child of the test binary: tests publish exits, or call
// reap, themselves.
func newTestReaper() *Reaper {
	return &Reaper{waiters: map[int][]chan runc.Exit{}, unclaimed: map[int]runc.Exit{}}
}

func TestExitStatus(t *testing.T) {
	tests := []struct {
		name string
		ws   unix.WaitStatus
		want int
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3 << 8, 3},
		{"exit 255", 255 << 8, 255},
		{"SIGKILL", 9, 137},
		{"SIGTERM", 15, 143},
		{"SIGABRT with core", 6 | 0x80, 134},
	}
	for _, tt := range tests {
		if got := ExitStatus(tt.ws); got != tt.want {
			t.Errorf("%s: ExitStatus(%#x) = %d, want %d", tt.name, uint32(tt.ws), got, tt.want)
		}
	}
}

// receive returns the exit on ch, failing if none comes soon.
func receive(t *testing.T, ch <-chan runc.Exit) runc.Exit {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no exit delivered")
		return runc.Exit{}
	}
}

func assertEmpty(t *testing.T, ch <-chan runc.Exit) {
	t.Helper()
	select {
	case e := <-ch:
		t.Errorf("unexpected exit delivered: %+v", e)
	default:
	}
}

func TestReaperSubscribeAfterExit(t *testing.T) {
	r := newTestReaper()
	r.publish(runc.Exit{Pid: 100, Status: 3})
	if e := receive(t, r.Subscribe(100)); e.Pid != 100 || e.Status != 3 {
		t.Errorf("Subscribe after publish = %+v, want pid 100 status 3", e)
	}
	// An exit is handed out once; a later subscriber waits for a new one.
	assertEmpty(t, r.Subscribe(100))
}

func TestReaperSubscribeBeforeExit(t *testing.T) {
	r := newTestReaper()
	a, b := r.Subscribe(200), r.Subscribe(200)
	other := r.Subscribe(201)
	assertEmpty(t, a)
	r.publish(runc.Exit{Pid: 200, Status: 137})
	for _, ch := range []<-chan runc.Exit{a, b} {
		if e := receive(t, ch); e.Pid != 200 || e.Status != 137 {
			t.Errorf("waiter got %+v, want pid 200 status 137", e)
		}
	}
	assertEmpty(t, other)
	// Delivered to waiters, so not kept as unclaimed.
	assertEmpty(t, r.Subscribe(200))
}

func TestReaperUnclaimedBounded(t *testing.T) {
	r := newTestReaper()
	for pid := 1; pid <= maxUnclaimed+10; pid++ {
		r.publish(runc.Exit{Pid: pid})
	}
	if n := len(r.unclaimed); n != maxUnclaimed {
		t.Errorf("%d unclaimed exits kept, want the bound %d", n, maxUnclaimed)
	}
}

// TestReaperProcessMonitor runs real children through Start, reap and Wait,
// as go-runc does. The test binary is their parent, so wait4(-1) reaps them
// without being PID 1.
func TestReaperProcessMonitor(t *testing.T) {
	pidfds := openPidfds(t)
	t.Cleanup(func() {
		if n := openPidfds(t); n != pidfds {
			t.Errorf("%d pidfds open after Wait, %d before: Wait leaves them to the GC", n, pidfds)
		}
	})
	tests := []struct {
		script string
		want   int
	}{
		{"exit 0", 0},
		{"exit 3", 3},
		{"kill -KILL $$", 137},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			r := newTestReaper()
			cmd := exec.Command("/bin/sh", "-c", tt.script)
			ch, err := r.Start(cmd)
			if err != nil {
				t.Fatalf("Start: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for len(ch) == 0 {
				if time.Now().After(deadline) {
					_ = cmd.Process.Kill()
					t.Fatal("child not reaped within 5s")
				}
				r.reap()
				time.Sleep(5 * time.Millisecond)
			}
			status, err := r.Wait(cmd, ch)
			if err != nil || status != tt.want {
				t.Errorf("Wait = %d, %v; want %d", status, err, tt.want)
			}
		})
	}
}

// openPidfds counts the pidfds this process holds, such as os/exec's.
func openPidfds(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l == "anon_inode:[pidfd]" {
			n++
		}
	}
	return n
}
