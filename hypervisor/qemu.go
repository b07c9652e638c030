package hypervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// ErrExited means QEMU is no longer running.
var ErrExited = errors.New("qemu exited")

// Timeouts bound every wait on QEMU and the guest.
type Timeouts struct {
	// QMP is how long QEMU may take to open its QMP socket.
	QMP time.Duration
	// Powerdown is how long the guest may take to power off on its own
	// after system_powerdown before QEMU is told to quit.
	Powerdown time.Duration
	// Quit is how long QEMU may take to exit after quit before SIGKILL.
	Quit time.Duration
}

// DefaultTimeouts are generous enough for TCG on a loaded machine.
func DefaultTimeouts() Timeouts {
	return Timeouts{QMP: 10 * time.Second, Powerdown: 2 * time.Second, Quit: 3 * time.Second}
}

// QEMU is one running QEMU process and its QMP connection.
type QEMU struct {
	cfg      Config
	timeouts Timeouts
	log      *slog.Logger

	cmd     *exec.Cmd
	mon     *qmp.SocketMonitor
	monMu   sync.Mutex
	done    chan struct{}
	waitErr error

	portMu   sync.Mutex
	portOpen bool
	portCh   chan struct{}
	// portChanges counts the agent port's VSERPORT_CHANGE events;
	// portChanged is closed and replaced at each.
	portChanges int
	portChanged chan struct{}
}

// Option changes how a QEMU is started.
type Option func(*QEMU)

// WithLogger sets the logger for debug messages.
func WithLogger(l *slog.Logger) Option { return func(q *QEMU) { q.log = l } }

// WithTimeouts overrides DefaultTimeouts().
func WithTimeouts(t Timeouts) Option { return func(q *QEMU) { q.timeouts = t } }

// New prepares a QEMU for cfg; nothing runs until Start.
func New(cfg Config, opts ...Option) *QEMU {
	q := &QEMU{cfg: cfg, timeouts: DefaultTimeouts(), log: slog.New(slog.DiscardHandler),
		done: make(chan struct{}), portCh: make(chan struct{}), portChanged: make(chan struct{})}
	for _, o := range opts {
		o(q)
	}
	return q
}

// Start spawns QEMU and returns once it answers on QMP with a running VM.
// On error nothing of it is left running.
func (q *QEMU) Start(ctx context.Context) error {
	if err := q.cfg.Validate(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	// Stale sockets from a crashed predecessor would make QEMU fail.
	for _, s := range []string{q.cfg.QMPSocket, q.cfg.Agent.SocketPath} {
		if s != "" {
			_ = os.Remove(s)
		}
	}
	cmd := exec.Command(q.cfg.Path, q.cfg.Args()...)
	for _, nic := range q.cfg.NICs {
		cmd.ExtraFiles = append(cmd.ExtraFiles, nic.Tap)
	}
	stderr, err := os.OpenFile(q.cfg.ConsoleLog+".stderr", os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	defer stderr.Close()
	cmd.Stdout, cmd.Stderr = stderr, stderr
	// QEMU dies with its owner, so a killed monitor leaves no orphan VM.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	q.log.Debug("spawn qemu", "path", q.cfg.Path, "args", cmd.Args[1:])
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start qemu: %w", err)
	}
	q.cmd = cmd
	go func() {
		q.waitErr = cmd.Wait()
		close(q.done)
	}()
	if err := q.connectQMP(ctx); err != nil {
		if kerr := q.kill(); kerr != nil {
			return fmt.Errorf("start qemu: %w (and could not end it: %w)", err, kerr)
		}
		return fmt.Errorf("start qemu: %w%s", err, q.stderrTail())
	}
	// QEMU made its sockets; they are for the owner alone.
	for _, s := range []string{q.cfg.QMPSocket, q.cfg.Agent.SocketPath} {
		if s != "" {
			_ = os.Chmod(s, 0o600)
		}
	}
	return nil
}

func (q *QEMU) connectQMP(ctx context.Context) error {
	deadline := time.Now().Add(q.timeouts.QMP)
	for {
		mon, err := qmp.NewSocketMonitor("unix", q.cfg.QMPSocket, time.Second)
		if err == nil {
			if err = mon.Connect(); err == nil {
				events, _ := mon.Events(context.Background())
				go q.watchEvents(events)
				q.monMu.Lock()
				q.mon = mon
				q.monMu.Unlock()
				status, err := q.status(ctx)
				if err != nil {
					return err
				}
				q.log.Debug("qmp ready", "status", status)
				return nil
			}
			_ = mon.Disconnect()
		}
		select {
		case <-q.done:
			return fmt.Errorf("%w before QMP answered: %v", ErrExited, q.waitErr)
		case <-ctx.Done():
			return fmt.Errorf("wait for qmp: %w", ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("qmp did not answer within %s: %v", q.timeouts.QMP, err)
		}
	}
}

// watchEvents consumes QMP events; it must run for as long as the monitor
// is connected, since the QMP library blocks replies behind unread events.
func (q *QEMU) watchEvents(events <-chan qmp.Event) {
	for ev := range events {
		if ev.Event != "VSERPORT_CHANGE" || ev.Data["id"] != agentPortID {
			continue
		}
		open, _ := ev.Data["open"].(bool)
		q.log.Debug("agent port", "open", open)
		q.portMu.Lock()
		if open && !q.portOpen {
			close(q.portCh)
		} else if !open && q.portOpen {
			q.portCh = make(chan struct{})
		}
		q.portOpen = open
		q.portChanges++
		close(q.portChanged)
		q.portChanged = make(chan struct{})
		q.portMu.Unlock()
	}
}

// WaitAgentPort waits until the guest opens the agent's virtio-serial port,
// the moment from which bytes the host sends are no longer dropped.
func (q *QEMU) WaitAgentPort(ctx context.Context) error {
	if q.cfg.Agent.Transport != TransportSerial {
		return nil
	}
	q.portMu.Lock()
	ch := q.portCh
	q.portMu.Unlock()
	select {
	case <-ch:
		return nil
	case <-q.done:
		return fmt.Errorf("wait for agent port: %w%s", ErrExited, q.stderrTail())
	case <-ctx.Done():
		return fmt.Errorf("wait for agent port: %w", ctx.Err())
	}
}

// AgentPortChanges counts the guest's opens and closes of the agent's
// virtio-serial port that QEMU reported, for WaitAgentPortChange.
func (q *QEMU) AgentPortChanges() int {
	q.portMu.Lock()
	defer q.portMu.Unlock()
	return q.portChanges
}

// WaitAgentPortChange waits until QEMU has reported the guest opening or
// closing the agent's port more than after times (a count from
// AgentPortChanges). QEMU reports at most one change a second for a port,
// the last of the second: a close and a reopen within it come as one open,
// within a second.
func (q *QEMU) WaitAgentPortChange(ctx context.Context, after int) error {
	for {
		q.portMu.Lock()
		changes, changed := q.portChanges, q.portChanged
		q.portMu.Unlock()
		if changes > after {
			return nil
		}
		select {
		case <-changed:
		case <-q.done:
			return fmt.Errorf("wait for the guest to open or close the agent port: %w%s", ErrExited, q.stderrTail())
		case <-ctx.Done():
			return fmt.Errorf("wait for the guest to open or close the agent port: %w", ctx.Err())
		}
	}
}

// Status returns QEMU's run state ("running", "paused", ...).
func (q *QEMU) Status() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), q.timeouts.QMP)
	defer cancel()
	return q.status(ctx)
}

func (q *QEMU) status(ctx context.Context) (string, error) {
	raw, err := q.run(ctx, "query-status", nil)
	if err != nil {
		return "", err
	}
	var st struct {
		Status string `json:"status"`
	}
	if err := json.Unmarshal(raw, &st); err != nil {
		return "", fmt.Errorf("query-status: %w", err)
	}
	return st.Status, nil
}

// run executes one QMP command and returns its "return" value; it gives up
// when ctx ends or QEMU exits.
func (q *QEMU) run(ctx context.Context, command string, args any) (json.RawMessage, error) {
	return q.runWithFile(ctx, command, args, nil)
}

// runWithFile is run, passing QEMU the descriptor of file along with the
// command (SCM_RIGHTS) when it is not nil.
func (q *QEMU) runWithFile(ctx context.Context, command string, args any, file *os.File) (json.RawMessage, error) {
	q.monMu.Lock()
	mon := q.mon
	q.monMu.Unlock()
	if mon == nil {
		return nil, fmt.Errorf("qmp %s: not connected", command)
	}
	req := map[string]any{"execute": command}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	type result struct {
		raw []byte
		err error
	}
	ch := make(chan result, 1)
	go func() {
		raw, err := mon.RunWithFile(b, file)
		ch <- result{raw, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-q.done:
		return nil, fmt.Errorf("qmp %s: %w", command, ErrExited)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
	if r.err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, r.err)
	}
	var resp struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(r.raw, &resp); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	return resp.Return, nil
}

// Pause stops the vCPUs.
func (q *QEMU) Pause() error { return q.simple("stop") }

// Resume restarts the vCPUs.
func (q *QEMU) Resume() error { return q.simple("cont") }

func (q *QEMU) simple(command string) error {
	ctx, cancel := context.WithTimeout(context.Background(), q.timeouts.QMP)
	defer cancel()
	_, err := q.run(ctx, command, nil)
	return err
}

// Stop ends the VM: an ACPI power-down (where the machine has ACPI), then
// quit, each step given its timeout, then SIGKILL; when ctx ends it goes
// straight to SIGKILL. It returns nil when QEMU exited by itself or on one
// of the requests, and otherwise why it had to be killed, or why it could
// not be.
func (q *QEMU) Stop(ctx context.Context) error {
	if q.cmd == nil {
		return nil
	}
	steps := []struct {
		command string
		wait    time.Duration
	}{
		{"system_powerdown", q.timeouts.Powerdown},
		{"quit", q.timeouts.Quit},
	}
	if !q.cfg.HasACPI() {
		steps = steps[1:] // nothing in the guest hears a power button
	}
	var why error // why QEMU is still running
	for _, s := range steps {
		if q.exited() {
			break
		}
		if why = ctx.Err(); why != nil {
			break
		}
		why = q.stopStep(ctx, s.command, s.wait)
	}
	if q.exited() {
		q.closeMonitor()
		return nil
	}
	if err := q.kill(); err != nil {
		return fmt.Errorf("stop qemu: %w (after %w)", err, why)
	}
	return fmt.Errorf("stop qemu: killed: %w", why)
}

// stopStep sends one shutdown command and waits up to wait for QEMU to
// exit; it returns why QEMU has not.
func (q *QEMU) stopStep(ctx context.Context, command string, wait time.Duration) error {
	sctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if _, err := q.run(sctx, command, nil); err != nil && !errors.Is(err, ErrExited) {
		q.log.Debug("stop qemu", "step", command, "err", err)
	}
	select {
	case <-q.done:
		return nil
	case <-sctx.Done():
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("%s: %w", command, err)
		}
		return fmt.Errorf("%s: still running after %s", command, wait)
	}
}

func (q *QEMU) exited() bool {
	select {
	case <-q.done:
		return true
	default:
		return false
	}
}

// kill ends QEMU at once and waits, up to the quit timeout, for it to be
// gone.
func (q *QEMU) kill() error {
	if q.cmd == nil || q.exited() {
		return nil
	}
	if err := q.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill pid %d: %w", q.cmd.Process.Pid, err)
	}
	select {
	case <-q.done:
	case <-time.After(q.timeouts.Quit):
		return fmt.Errorf("pid %d still running %s after SIGKILL", q.cmd.Process.Pid, q.timeouts.Quit)
	}
	q.closeMonitor()
	return nil
}

func (q *QEMU) closeMonitor() {
	q.monMu.Lock()
	defer q.monMu.Unlock()
	if q.mon != nil {
		_ = q.mon.Disconnect()
		q.mon = nil
	}
}

// Done is closed once QEMU has exited, for whatever reason.
func (q *QEMU) Done() <-chan struct{} { return q.done }

// ExitError is QEMU's wait status once Done is closed.
func (q *QEMU) ExitError() error { return q.waitErr }

// PID is QEMU's process ID, 0 before Start.
func (q *QEMU) PID() int {
	if q.cmd == nil || q.cmd.Process == nil {
		return 0
	}
	return q.cmd.Process.Pid
}

// stderrTail returns the end of QEMU's stderr, to explain a failed start.
func (q *QEMU) stderrTail() string { return logTail(q.cfg.ConsoleLog + ".stderr") }

// logTail returns ": " and the end of a log file, or "" when it is empty.
func logTail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil || len(b) == 0 {
		return ""
	}
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	return ": " + string(b)
}
