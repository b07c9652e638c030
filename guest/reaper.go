package guest

import (
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"time"

	runc "github.com/containerd/go-runc"
	"golang.org/x/sys/unix"
)

// Reaper reaps every child of PID 1 from one SIGCHLD loop and hands each exit
// to whoever waits for that PID. It implements go-runc's ProcessMonitor, so
// runc invocations and container processes (reparented to PID 1 once runc
// exits) share one wait4 caller and no exit is stolen.
type Reaper struct {
	mu        sync.Mutex
	waiters   map[int][]chan runc.Exit
	unclaimed map[int]runc.Exit
}

// maxUnclaimed bounds the exits kept for PIDs nobody asked about yet.
const maxUnclaimed = 4096

// NewReaper starts reaping. Only PID 1 (or a subreaper) should run one.
func NewReaper() *Reaper {
	r := &Reaper{waiters: map[int][]chan runc.Exit{}, unclaimed: map[int]runc.Exit{}}
	sigs := make(chan os.Signal, 64)
	signal.Notify(sigs, unix.SIGCHLD)
	go func() {
		for range sigs {
			r.reap()
		}
	}()
	return r
}

func (r *Reaper) reap() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		r.publish(runc.Exit{Timestamp: time.Now(), Pid: pid, Status: ExitStatus(ws)})
	}
}

// ExitStatus is the shell's view of a wait status: the code, or 128+N for
// death by signal N.
func ExitStatus(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

func (r *Reaper) publish(e runc.Exit) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ws := r.waiters[e.Pid]
	if len(ws) == 0 {
		if len(r.unclaimed) < maxUnclaimed {
			r.unclaimed[e.Pid] = e
		}
		return
	}
	delete(r.waiters, e.Pid)
	for _, w := range ws {
		w <- e
	}
}

// Subscribe returns a channel that receives pid's exit, even if it was reaped
// before the call.
func (r *Reaper) Subscribe(pid int) <-chan runc.Exit {
	ch := make(chan runc.Exit, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.unclaimed[pid]; ok {
		delete(r.unclaimed, pid)
		ch <- e
		return ch
	}
	r.waiters[pid] = append(r.waiters[pid], ch)
	return ch
}

// Start implements runc.ProcessMonitor.
func (r *Reaper) Start(c *exec.Cmd) (chan runc.Exit, error) {
	// Hold the lock across fork so the exit cannot be published before the
	// waiter is registered.
	r.mu.Lock()
	if err := c.Start(); err != nil {
		r.mu.Unlock()
		return nil, err
	}
	ch := make(chan runc.Exit, 1)
	r.waiters[c.Process.Pid] = append(r.waiters[c.Process.Pid], ch)
	r.mu.Unlock()
	return ch, nil
}

// StartLocked implements runc.ProcessMonitor. hull sets no Pdeathsig on
// runc, so there is no thread to pin.
func (r *Reaper) StartLocked(c *exec.Cmd) (chan runc.Exit, error) { return r.Start(c) }

// Wait implements runc.ProcessMonitor.
func (r *Reaper) Wait(c *exec.Cmd, ec chan runc.Exit) (int, error) {
	e := <-ec
	// Let exec.Cmd release its resources (copying goroutines); the process
	// is already reaped, so its own wait fails with ECHILD, which is fine.
	// That failed wait leaves the os.Process's pidfd open until a finalizer
	// closes it: close it now, not one runc call's fd at a time at GC.
	_ = c.Wait()
	_ = c.Process.Release()
	return e.Status, nil
}
