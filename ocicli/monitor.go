package ocicli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/internal/atomicfile"
	"github.com/hull-runtime/hull/pod"
)

// Files of a sandbox directory written by its monitor.
const (
	monitorSocket = "monitor.sock"
	sandboxInfo   = "sandbox.json"
)

// drainWait bounds how long a stopping monitor waits for its clients to
// hang up (the destroy call's caller once it has the reply, proxies once
// their calls fail on the stopped sandbox).
const drainWait = 5 * time.Second

// SandboxInfo is what a monitor publishes about its sandbox.
type SandboxInfo struct {
	ID         string         `json:"id"`
	MonitorPID int            `json:"monitorPid"`
	QEMUPID    int            `json:"qemuPid"`
	Accel      string         `json:"accel"`
	AccelWhy   string         `json:"accelReason"`
	Timings    []pod.Step     `json:"timings"`
	Started    time.Time      `json:"started"`
	Monitor    pod.ProcessRef `json:"monitor"`
	// QEMU lets a delete end a QEMU that outlived its monitor.
	QEMU pod.ProcessRef `json:"qemu"`
	// Virtiofsd serves the share over virtio-fs (nil for 9p); a delete
	// ends one that outlived its monitor, as it does QEMU.
	Virtiofsd *pod.ProcessRef `json:"virtiofsd,omitempty"`
	// Template is the hash of the VM template the sandbox is a clone of,
	// absent when it booted.
	Template string `json:"template,omitempty"`
}

// MonitorOptions start a sandbox monitor.
type MonitorOptions struct {
	Store   *Store
	Sandbox pod.SandboxOptions
	// Ready receives "ok\n" once the sandbox serves, or the error that
	// stopped it; it is closed either way.
	Ready *os.File
	// Cgroup is the cgroupsPath the monitor (and so QEMU) runs in, made by
	// CgroupDriver.
	Cgroup       string
	CgroupDriver pod.CgroupDriver
	Log          *slog.Logger
}

// RunMonitor is the long-lived process of one sandbox: it boots the VM, owns
// the single agent connection and serves it, multiplexed, to the CLI calls
// and proxies on the monitor socket. It returns when the sandbox is
// destroyed, QEMU dies or the monitor is told to stop (SIGTERM), after
// removing everything the sandbox made.
func RunMonitor(ctx context.Context, o MonitorOptions) (err error) {
	ready := func(msg string) {
		if o.Ready != nil {
			fmt.Fprintln(o.Ready, msg)
			o.Ready.Close()
			o.Ready = nil
		}
	}
	defer func() {
		if err != nil {
			ready("error: " + err.Error())
		}
	}()
	// Sockets and logs of the sandbox (QEMU's too) are the owner's alone.
	syscall.Umask(0o077)
	// Before any child: QEMU must start inside the sandbox's cgroup.
	if err := pod.JoinCgroup(o.CgroupDriver, o.Cgroup, o.Sandbox.ID); err != nil {
		return err
	}
	// Published first, so that a delete racing a half-booted sandbox can
	// find this process and stop it.
	self, err := pod.RefOf(os.Getpid())
	if err != nil {
		return err
	}
	refPath := o.Store.MonitorRefPath(o.Sandbox.ID)
	if err := os.MkdirAll(filepath.Dir(refPath), 0o700); err != nil {
		return err
	}
	if err := writeJSON(refPath, self); err != nil {
		return err
	}
	bootCtx, stopBoot := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	sb, err := pod.StartSandbox(bootCtx, o.Sandbox)
	stopBoot()
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer signal.Stop(sigs)
	svc := &monitorService{AgentService: sb.Agent(), destroy: make(chan struct{}), done: make(chan error, 1), log: o.Log}
	var calls pendingCalls
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(calls.intercept))
	if err != nil {
		_ = sb.Stop(context.Background())
		return fmt.Errorf("monitor %s: %w", sb.ID, err)
	}
	agentproto.RegisterAgentService(srv, svc)
	sock := filepath.Join(sb.Dir, monitorSocket)
	l, err := listenUnix(sock)
	if err != nil {
		_ = sb.Stop(context.Background())
		return fmt.Errorf("monitor %s: %w", sb.ID, err)
	}
	clients := agentproto.NewDrainingListener(l)
	go func() { _ = srv.Serve(context.Background(), clients) }()
	qemu, _ := pod.RefOf(sb.VM().PID()) // a QEMU already gone is found by the wait below
	info := SandboxInfo{ID: sb.ID, MonitorPID: os.Getpid(), QEMUPID: sb.VM().PID(), Accel: sb.Accel.Name,
		AccelWhy: sb.Accel.Reason, Timings: sb.Timings, Started: time.Now(), Monitor: self, QEMU: qemu, Template: sb.Template}
	if fsd := sb.Virtiofsd(); fsd != nil {
		ref, _ := pod.RefOf(fsd.PID()) // one already gone is found by the wait below
		info.Virtiofsd = &ref
	}
	if err := writeJSON(filepath.Join(sb.Dir, sandboxInfo), info); err != nil {
		srv.Close()
		_ = sb.Stop(context.Background())
		return fmt.Errorf("monitor %s: %w", sb.ID, err)
	}
	ready("ok")

	var why string
	select {
	case <-svc.destroy:
		why = "destroyed"
	case why = <-sb.Ended():
	case s := <-sigs:
		why = "signal " + s.String()
	}
	if why != "destroyed" && !strings.HasPrefix(why, "signal") {
		// Nobody asked for this: a guest panic (the agent is PID 1, so an
		// agent crash is one), or QEMU or virtiofsd killed. Say so, with
		// the guest's last words, before the console log goes with the
		// sandbox.
		report := errors.New(why)
		if why == pod.EndVirtiofsd {
			// QEMU lives on without its share: say what ended virtiofsd.
			report = fmt.Errorf("%s: %w", why, sb.Virtiofsd().ExitError())
		} else if !waitClosed(sb.VM().Done(), 5*time.Second) {
			why += " (qemu still running)"
			report = errors.New(why)
		}
		o.Log.Error("sandbox died", "sandbox", sb.ID, "why", why, "err", sb.WithConsole(report))
	}
	o.Log.Debug("monitor stopping", "sandbox", sb.ID, "why", why)
	svc.stopping.Store(true)
	// Calls already forwarded get their replies before the agent goes.
	pctx, cancelPending := context.WithTimeout(context.Background(), drainWait)
	if err := calls.wait(pctx); err != nil {
		o.Log.Warn("monitor stopping with calls in flight", "sandbox", sb.ID, "err", err)
	}
	cancelPending()
	stopErr := sb.Stop(context.Background())
	svc.finish(stopErr)
	// The server goes once the destroy call's reply has arrived: its
	// caller hangs up then.
	dctx, cancel := context.WithTimeout(context.Background(), drainWait)
	if err := clients.Drain(dctx); err != nil {
		o.Log.Warn("monitor stopping with clients connected", "sandbox", sb.ID, "err", err)
	}
	cancel()
	srv.Close()
	return stopErr
}

// waitClosed waits up to d for ch to close.
func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// monitorService forwards every agent call to the sandbox's one agent
// connection, except DestroySandbox, which stops the whole sandbox.
type monitorService struct {
	agentproto.AgentService
	once    sync.Once
	destroy chan struct{}
	done    chan error
	// stopping is set once the monitor stops the sandbox: waits it ends
	// then are not hang-ups.
	stopping atomic.Bool
	log      *slog.Logger
}

// orphanKillWait bounds the kill of a process whose waiter hung up.
const orphanKillWait = 10 * time.Second

// WaitProcess forwards the wait. A waiter that hangs up before the process
// ends is the process's host stand-in gone (its proxy, whose PID callers
// hold as the process's, or a foreground hull exec), however it died:
// containerd SIGKILLs an exec's PID when a probe times out. The process
// goes with it, as a runc process would have gone itself; it is not left
// running in the guest.
func (m *monitorService) WaitProcess(ctx context.Context, req *agentproto.ProcessRequest) (*agentproto.WaitProcessResponse, error) {
	resp, err := m.AgentService.WaitProcess(ctx, req)
	if err == nil || !errors.Is(ctx.Err(), context.Canceled) || m.stopping.Load() {
		return resp, err
	}
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), orphanKillWait)
	defer cancel()
	_, kerr := m.AgentService.SignalProcess(kctx, &agentproto.SignalProcessRequest{
		ContainerId: req.ContainerId, ExecId: req.ExecId, Signal: uint32(syscall.SIGKILL), All: req.ExecId == ""})
	m.log.Debug("waiter hung up: process killed", "container", req.ContainerId, "exec", req.ExecId, "err", kerr)
	return resp, err
}

func (m *monitorService) DestroySandbox(ctx context.Context, _ *agentproto.DestroySandboxRequest) (*agentproto.Empty, error) {
	m.once.Do(func() { close(m.destroy) })
	select {
	case err := <-m.done:
		m.done <- err
		if err != nil {
			return nil, err
		}
		return &agentproto.Empty{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (m *monitorService) finish(err error) { m.done <- err }

func listenUnix(path string) (net.Listener, error) {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return atomicfile.Write(path, b, 0o600)
}

// DialMonitor connects to a sandbox's monitor, failing at once with
// ErrSandboxGone when nobody serves there.
func DialMonitor(store *Store, sid string) (*agentproto.Client, error) {
	conn, err := net.DialTimeout("unix", filepath.Join(store.SandboxDir(sid), monitorSocket), 5*time.Second)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w: %s", ErrSandboxGone, sid)
		}
		return nil, fmt.Errorf("dial monitor of %s: %w", sid, err)
	}
	return agentproto.NewClient(conn), nil
}

// readMonitorRef reads the monitor's process reference, written before the
// sandbox boots.
func readMonitorRef(store *Store, sid string) (pod.ProcessRef, error) {
	var ref pod.ProcessRef
	b, err := os.ReadFile(store.MonitorRefPath(sid))
	if err != nil {
		return ref, err
	}
	err = json.Unmarshal(b, &ref)
	return ref, err
}

// ReadSandboxInfo reads what a sandbox's monitor published.
func ReadSandboxInfo(store *Store, sid string) (*SandboxInfo, error) {
	b, err := os.ReadFile(filepath.Join(store.SandboxDir(sid), sandboxInfo))
	if err != nil {
		return nil, err
	}
	var info SandboxInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return nil, err
	}
	return &info, nil
}
