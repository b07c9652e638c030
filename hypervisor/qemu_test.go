package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as a fake QEMU: Start re-executes it with
// fakeQEMUEnv set to one of the behaviours below, and TestMain runs the fake
// instead of the tests.
const fakeQEMUEnv = "HULL_FAKE_QEMU"

const (
	// fakeServe speaks QMP until told to quit.
	fakeServe = "serve"
	// fakeFail complains on stderr and exits 1 without opening QMP.
	fakeFail = "fail"
	// fakeMute completes the QMP handshake, then never answers a command,
	// like a QEMU whose main loop is stuck.
	fakeMute = "mute"
	// fakeMuteAfterStart answers the query-status of Start, then nothing.
	fakeMuteAfterStart = "mute-after-start"
	// fakeIncoming waits for a state as QEMU -incoming defer does: it is
	// "inmigrate" until migrate-incoming has loaded one.
	fakeIncoming = "incoming"
	// fakeBadState is fakeIncoming whose state does not load: QEMU exits.
	fakeBadState = "bad-state"
	// fakePortCycle is fakeServe whose guest closes the agent port once
	// and opens it again.
	fakePortCycle = "port-cycle"
)

const fakeBadStateMessage = "qemu-system-x86_64: load of migration failed: Invalid argument"

const fakeFailMessage = "qemu-system-x86_64: -machine bogus: unsupported machine type"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeQEMUEnv); mode != "" {
		os.Exit(fakeQEMU(mode, os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeQEMU plays QEMU for one QMP client, scripted enough for Start, Status,
// WaitAgentPort and Stop.
func fakeQEMU(mode string, args []string) int {
	if mode == fakeFail {
		fmt.Fprintln(os.Stderr, fakeFailMessage)
		return 1
	}
	path, err := qmpSocketArg(args)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 2
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake qemu:", err)
		return 2
	}
	defer l.Close()
	for {
		conn, err := l.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake qemu:", err)
			return 2
		}
		if quit := serveQMP(conn, mode); quit {
			return 0
		}
	}
}

// serveQMP answers one QMP connection; it reports whether quit was asked.
func serveQMP(conn net.Conn, mode string) (quit bool) {
	defer conn.Close()
	send := func(s string) { fmt.Fprintf(conn, "%s\r\n", s) }
	send(`{"QMP":{"version":{"qemu":{"major":7,"minor":2,"micro":0},"package":""},"capabilities":["oob"]}}`)
	sentPortEvent := false
	status := "running"
	if mode == fakeIncoming || mode == fakeBadState {
		status = "inmigrate"
	}
	caps, haveFD, migrated := false, false, false
	// Commands are not newline-terminated: QEMU parses a JSON stream.
	dec := json.NewDecoder(conn)
	for answered := 0; ; answered++ {
		var cmd struct {
			Execute string `json:"execute"`
		}
		if err := dec.Decode(&cmd); err != nil {
			return false
		}
		if (mode == fakeMute && answered >= 1) || (mode == fakeMuteAfterStart && answered >= 2) {
			continue
		}
		switch cmd.Execute {
		case "qmp_capabilities", "system_powerdown":
			// system_powerdown is acknowledged but the "guest" ignores
			// it, so Stop has to go on to quit.
			send(`{"return":{}}`)
		case "query-status":
			send(fmt.Sprintf(`{"return":{"status":%q,"singlestep":false,"running":%v}}`, status, status == "running"))
			if status == "inmigrate" && migrated {
				status = "paused" // loaded by the next time it is asked
			}
			// The event goes out after the first command that follows
			// the handshake: go-qemu's monitor decodes the handshake
			// through a buffered reader it then drops, and only
			// forwards events once Events has been called, so an event
			// sent right after the handshake may be lost.
			if !sentPortEvent {
				send(`{"event":"VSERPORT_CHANGE","data":{"id":"agent-port","open":true},"timestamp":{"seconds":0,"microseconds":0}}`)
				if mode == fakePortCycle {
					send(`{"event":"VSERPORT_CHANGE","data":{"id":"agent-port","open":false},"timestamp":{"seconds":0,"microseconds":0}}`)
					send(`{"event":"VSERPORT_CHANGE","data":{"id":"agent-port","open":true},"timestamp":{"seconds":0,"microseconds":0}}`)
				}
				sentPortEvent = true
			}
		case "migrate-set-capabilities":
			caps = true
			send(`{"return":{}}`)
		case "getfd":
			haveFD = true
			send(`{"return":{}}`)
		case "stop":
			if mode == fakeServe {
				// Pause's test expects fakeServe to refuse it.
				send(`{"error":{"class":"CommandNotFound","desc":"The command stop has not been found"}}`)
				continue
			}
			status = "paused"
			send(`{"return":{}}`)
		case "cont":
			status = "running"
			send(`{"return":{}}`)
		case "migrate", "migrate-incoming":
			if !caps || !haveFD {
				send(`{"error":{"class":"GenericError","desc":"migration without x-ignore-shared or the state fd"}}`)
				continue
			}
			if mode == fakeBadState {
				// QEMU loads the state after it answered, then exits.
				send(`{"return":{}}`)
				fmt.Fprintln(os.Stderr, fakeBadStateMessage)
				os.Exit(1)
			}
			migrated = true
			send(`{"return":{}}`)
		case "query-migrate":
			if migrated {
				send(`{"return":{"status":"completed"}}`)
			} else {
				send(`{"return":{}}`)
			}
		case "quit":
			send(`{"return":{}}`)
			return true
		default:
			send(fmt.Sprintf(`{"error":{"class":"CommandNotFound","desc":"The command %s has not been found"}}`, cmd.Execute))
		}
	}
}

// qmpSocketArg finds the socket path in "-qmp unix:PATH,server=on,wait=off".
func qmpSocketArg(args []string) (string, error) {
	for i := 0; i+1 < len(args); i++ {
		if args[i] != "-qmp" {
			continue
		}
		spec, ok := strings.CutPrefix(args[i+1], "unix:")
		if !ok {
			return "", fmt.Errorf("-qmp %q is not a unix socket", args[i+1])
		}
		// The path runs to the first single comma; ",," is an escaped comma.
		var path strings.Builder
		for j := 0; j < len(spec); j++ {
			if spec[j] == ',' {
				if j+1 < len(spec) && spec[j+1] == ',' {
					path.WriteByte(',')
					j++
					continue
				}
				break
			}
			path.WriteByte(spec[j])
		}
		return path.String(), nil
	}
	return "", errors.New("no -qmp argument")
}

// fakeConfig is a Config that runs this test binary as QEMU in mode.
func fakeConfig(t *testing.T, mode string) Config {
	t.Helper()
	t.Setenv(fakeQEMUEnv, mode)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	dir, err := os.MkdirTemp("", "hull-qemu")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return Config{
		Path:       exe,
		Machine:    "q35",
		Accel:      "tcg",
		CPUModel:   "max",
		VCPUs:      1,
		MemoryMiB:  128,
		Kernel:     filepath.Join(dir, "vmlinuz"),
		QMPSocket:  filepath.Join(dir, "qmp.sock"),
		ConsoleLog: filepath.Join(dir, "console.log"),
		Agent: AgentDevice{
			Transport:  TransportSerial,
			SocketPath: filepath.Join(dir, "agent.sock"),
			PortName:   "hull.agent",
		},
	}
}

var testTimeouts = Timeouts{QMP: 5 * time.Second, Powerdown: 100 * time.Millisecond, Quit: 2 * time.Second}

func TestQEMUStartStop(t *testing.T) {
	q := New(fakeConfig(t, fakeServe), WithTimeouts(testTimeouts))
	if q.PID() != 0 {
		t.Errorf("PID() before Start = %d, want 0", q.PID())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Whatever fails below, leave no fake QEMU behind.
	t.Cleanup(func() { _ = q.kill() })

	if q.PID() <= 0 {
		t.Errorf("PID() after Start = %d, want > 0", q.PID())
	}
	status, err := q.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if status != "running" {
		t.Errorf("Status() = %q, want running", status)
	}
	if err := q.WaitAgentPort(ctx); err != nil {
		t.Fatalf("WaitAgentPort: %v", err)
	}
	if err := q.Pause(); err == nil {
		t.Error("Pause succeeded although the fake QEMU answers stop with CommandNotFound")
	}

	start := time.Now()
	if err := q.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	select {
	case <-q.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Stop returned")
	}
	// The fake ignores system_powerdown and exits on quit, so Stop must
	// have waited out Powerdown and then sent quit, well before SIGKILL.
	if took := time.Since(start); took < testTimeouts.Powerdown || took > testTimeouts.Powerdown+testTimeouts.Quit {
		t.Errorf("Stop took %s, want between %s and %s", took, testTimeouts.Powerdown, testTimeouts.Powerdown+testTimeouts.Quit)
	}
	if err := q.ExitError(); err != nil {
		t.Errorf("ExitError() = %v, want nil: the fake exits 0 on quit, so it was killed", err)
	}
	if _, err := q.Status(); err == nil {
		t.Error("Status after Stop succeeded, want an error")
	}
}

func TestQEMUStartExitsEarly(t *testing.T) {
	cfg := fakeConfig(t, fakeFail)
	q := New(cfg, WithTimeouts(testTimeouts))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := q.Start(ctx)
	if err == nil {
		_ = q.kill()
		t.Fatal("Start succeeded with a QEMU that exits at once")
	}
	if !errors.Is(err, ErrExited) {
		t.Errorf("Start error %q does not wrap ErrExited", err)
	}
	if !strings.Contains(err.Error(), fakeFailMessage) {
		t.Errorf("Start error %q does not carry QEMU's stderr %q", err, fakeFailMessage)
	}
	select {
	case <-q.Done():
	default:
		t.Error("Done not closed after a failed Start")
	}
}

func TestQEMUStartInvalidConfig(t *testing.T) {
	cfg := fakeConfig(t, fakeServe)
	cfg.VCPUs = 0
	q := New(cfg, WithTimeouts(testTimeouts))
	if err := q.Start(context.Background()); err == nil {
		_ = q.kill()
		t.Fatal("Start succeeded with VCPUs = 0")
	}
	if q.PID() != 0 {
		t.Errorf("a process was spawned (pid %d) for an invalid config", q.PID())
	}
}

func TestQEMUStopBeforeStart(t *testing.T) {
	q := New(fakeConfig(t, fakeServe))
	if err := q.Stop(context.Background()); err != nil {
		t.Errorf("Stop before Start = %v, want nil", err)
	}
}

func TestQMPSocketArg(t *testing.T) {
	got, err := qmpSocketArg([]string{"-m", "128M", "-qmp", "unix:/tmp/a,,b/qmp.sock,server=on,wait=off"})
	if err != nil || got != "/tmp/a,b/qmp.sock" {
		t.Errorf("qmpSocketArg = %q, %v; want /tmp/a,b/qmp.sock", got, err)
	}
}

// TestQEMUStartHonoursContext: a QEMU that accepts QMP but never answers
// must not hold Start past its context's deadline.
func TestQEMUStartHonoursContext(t *testing.T) {
	q := New(fakeConfig(t, fakeMute), WithTimeouts(testTimeouts))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- q.Start(ctx) }()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Start succeeded although QMP never answered query-status")
		}
	case <-time.After(testTimeouts.QMP + 2*time.Second):
		t.Error("Start still blocked past its context deadline and the QMP timeout")
		killFake(t, q)
		<-errc
	}
}

// TestQEMUStopHungQMP: Stop promises SIGKILL once ctx ends, so a QEMU that
// stopped answering QMP must not hold it.
func TestQEMUStopHungQMP(t *testing.T) {
	q := New(fakeConfig(t, fakeMuteAfterStart), WithTimeouts(testTimeouts))
	if err := q.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- q.Stop(ctx) }()
	select {
	case err := <-errc:
		// Gone, but not by a shutdown: the caller hears why.
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("Stop of a QEMU it had to kill = %v, want an error saying so", err)
		}
	case <-time.After(testTimeouts.Powerdown + testTimeouts.Quit + 2*time.Second):
		t.Error("Stop still blocked on an unanswered QMP command past its context and timeouts")
		killFake(t, q)
		<-errc
	}
	select {
	case <-q.Done():
	default:
		t.Error("QEMU still running after Stop returned")
	}
}

// killFake ends the fake QEMU directly, to unblock a hung call under test.
func killFake(t *testing.T, q *QEMU) {
	t.Helper()
	if q.cmd != nil && q.cmd.Process != nil {
		_ = q.cmd.Process.Kill()
	}
}

// fakeTemplateConfig is fakeConfig with guest RAM in a shared file.
func fakeTemplateConfig(t *testing.T, mode string) Config {
	cfg := fakeConfig(t, mode)
	cfg.RAM = &RAMFile{Path: filepath.Join(filepath.Dir(cfg.QMPSocket), "memory"), Shared: true}
	return cfg
}

func TestQEMUSaveState(t *testing.T) {
	cfg := fakeTemplateConfig(t, fakePortCycle)
	q := New(cfg, WithTimeouts(testTimeouts))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = q.kill() })
	state := filepath.Join(filepath.Dir(cfg.QMPSocket), "state")
	if err := q.SaveState(ctx, state); err != nil {
		t.Fatalf("SaveState: %v", err)
	}
	if status, err := q.Status(); err != nil || status != "paused" {
		t.Errorf("after SaveState the VM is %q (%v), want paused", status, err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Errorf("SaveState made no state file: %v", err)
	}
	// The state file is new: a second save does not overwrite the first.
	if err := q.SaveState(ctx, state); !errors.Is(err, os.ErrExist) {
		t.Errorf("SaveState over an existing file = %v, want ErrExist", err)
	}
}

func TestQEMUSaveStateNeedsSharedRAM(t *testing.T) {
	cfg := fakeTemplateConfig(t, fakeServe)
	cfg.RAM.Shared = false
	q := New(cfg, WithTimeouts(testTimeouts))
	if err := q.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = q.kill() })
	if err := q.SaveState(context.Background(), filepath.Join(t.TempDir(), "state")); err == nil {
		t.Error("SaveState of private RAM succeeded: the state would lack the RAM")
	}
}

// startIncoming starts a fake QEMU in mode waiting for a state (clone's
// RAM, -incoming defer) and writes state beside it; it returns the QEMU and
// the state's path.
func startIncoming(ctx context.Context, t *testing.T, mode string, state []byte) (*QEMU, string) {
	t.Helper()
	cfg := fakeTemplateConfig(t, mode)
	cfg.RAM.Shared, cfg.Incoming = false, true
	path := filepath.Join(filepath.Dir(cfg.QMPSocket), "state")
	if err := os.WriteFile(path, state, 0o600); err != nil {
		t.Fatal(err)
	}
	q := New(cfg, WithTimeouts(testTimeouts))
	if err := q.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = q.kill() })
	return q, path
}

func TestQEMURestore(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, state := startIncoming(ctx, t, fakeIncoming, []byte("QEVM"))
	if err := q.Restore(ctx, state); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if status, err := q.Status(); err != nil || status != "running" {
		t.Errorf("after Restore the VM is %q (%v), want running", status, err)
	}
}

func TestQEMURestoreBadState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q, state := startIncoming(ctx, t, fakeBadState, []byte("garbage"))
	err := q.Restore(ctx, state)
	if !errors.Is(err, ErrMigration) {
		t.Fatalf("Restore of a state QEMU cannot load = %v, want ErrMigration", err)
	}
	if !strings.Contains(err.Error(), fakeBadStateMessage) {
		t.Errorf("Restore error %q does not carry QEMU's stderr", err)
	}
}

func TestQEMURestoreNeedsIncoming(t *testing.T) {
	cfg := fakeTemplateConfig(t, fakeServe)
	q := New(cfg, WithTimeouts(testTimeouts))
	if err := q.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = q.kill() })
	if err := q.Restore(context.Background(), "/nonexistent"); err == nil {
		t.Error("Restore into a QEMU that booted succeeded")
	}
}

func TestQEMUWaitAgentPortChange(t *testing.T) {
	q := New(fakeConfig(t, fakePortCycle), WithTimeouts(testTimeouts))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := q.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = q.kill() })
	// The fake's guest opens the port, closes it and opens it again.
	if err := q.WaitAgentPortChange(ctx, 2); err != nil {
		t.Fatalf("WaitAgentPortChange(2) after three changes: %v", err)
	}
	if n := q.AgentPortChanges(); n != 3 {
		t.Errorf("AgentPortChanges() = %d, want 3", n)
	}
	if err := q.WaitAgentPort(ctx); err != nil {
		t.Errorf("WaitAgentPort after the port reopened: %v", err)
	}
	short, cancelShort := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancelShort()
	if err := q.WaitAgentPortChange(short, 3); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitAgentPortChange(3) with no fourth change = %v, want the deadline", err)
	}
}
