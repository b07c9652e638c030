package guest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"time"

	runc "github.com/containerd/go-runc"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
)

// Paths inside the guest image.
const (
	// runtimes are the OCI runtimes the image may carry, preferred first.
	cRuntime    = "/usr/bin/crun"
	runcPath    = "/usr/bin/runc"
	runcRoot    = "/run/runc"
	bundleDir   = "/run/hull/bundles"
	moduleList  = "/lib/modules/load"
	cgroupRoot  = "/sys/fs/cgroup"
	portTimeout = 10 * time.Second
	// hangupWait bounds the wait for the host to hang up after
	// DestroySandbox, should it never do so.
	hangupWait = 5 * time.Second
)

// Main is PID 1 of the guest. It returns nil once the sandbox is destroyed,
// or a fatal error; either way the caller then powers the VM off.
func Main() error {
	started := time.Now()
	// A stray SIGTERM, SIGINT or SIGHUP (from a container sharing the
	// guest's PID namespace) must not take the whole sandbox down.
	signal.Ignore(unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	if err := MountBase(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read kernel command line: %w", err)
	}
	boot, err := ParseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	level := slog.LevelWarn
	trace := func(string) {}
	if boot.Debug {
		level = slog.LevelDebug
		trace = kmsgTrace(started)
	}
	trace("agent: base mounted, command line read")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if err := LoadModules(moduleList); err != nil {
		return err
	}
	trace("agent: modules loaded")
	// The first request (Health) needs neither cgroups, loopback nor the
	// share; they are set up once the agent serves (a guest of one vCPU
	// would otherwise share it between the two), and CreateContainer waits
	// for them.
	setup := newSetup()
	// owned is closed once the guest belongs to a sandbox: at once after a
	// boot, at StartClone in a template's clone. A template mounts its
	// share only then: QEMU cannot save a VM with a 9p export mounted.
	owned := make(chan struct{})
	var startClone func(context.Context, *agentproto.StartCloneRequest) error
	if boot.Template {
		startClone = func(_ context.Context, req *agentproto.StartCloneRequest) error {
			if err := ReseedRNG(req.Entropy); err != nil {
				return err
			}
			if err := SetClock(req.UnixNano); err != nil {
				return err
			}
			if err := SetNICAddresses(req.Nics); err != nil {
				return err
			}
			trace("agent: clone started")
			close(owned)
			return nil
		}
	} else {
		close(owned)
	}
	setupWork := func() error {
		if err := MountCgroups(); err != nil {
			return err
		}
		if err := LoopbackUp(); err != nil {
			return err
		}
		// A clone's share is its own: it is mounted once StartClone has
		// made the clone the sandbox's, beside serving as after a boot.
		<-owned
		if boot.ShareTag != "" {
			if err := MountShare(boot.ShareTag, boot.ShareFS); err != nil {
				return err
			}
		}
		trace("agent: cgroups, loopback and share set up")
		return nil
	}
	reaper := NewReaper()
	// go-runc reports exits through this package-level monitor; PID 1 must
	// own every wait4, so it is set once, here, before runc runs.
	runc.Monitor = reaper
	command := runcPath
	if _, err := os.Stat(cRuntime); err == nil {
		command = cRuntime
	}
	svc := NewService(Config{
		Runtime: func(log string) Runtime {
			return &runc.Runc{Command: command, Root: runcRoot, Log: log, LogFormat: runc.JSON}
		},
		Reaper:     reaper,
		ShareDir:   ShareDir,
		BundleDir:  bundleDir,
		CgroupRoot: cgroupRoot,
		ProcSys:    "/proc/sys",
		NoPivot:    rootIsRAM(),
		Log:        log,
		Ready:      setup.wait,
		StartClone: startClone,
	})
	l, err := listen(boot)
	if err != nil {
		return err
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		return fmt.Errorf("ttrpc server: %w", err)
	}
	agentproto.RegisterAgentService(srv, svc)
	log.Debug("agent serving", "on", l.Addr().String())
	trace("agent: serving")
	setup.start(setupWork)
	return serve(srv, l, svc.Destroyed(), owned, hangupWait, log)
}

// serve answers on l until destroyed is closed, then returns once the
// host has hung up, which it does when it has its reply: the VM must not
// go away with the reply to DestroySandbox still in it. A host that does
// not hang up within wait is not waited for any longer.
//
// It also returns when the host hangs up without destroying the sandbox,
// once the guest is owned. The host end belongs to the sandbox's owner
// (hull's monitor), which connects once and hangs up early only by dying;
// QEMU must then end too, and when it runs as an unprivileged user it has
// lost the death signal that would end it with its owner (setuid clears
// it). Until owned is closed (a VM template, saved after its host hung up,
// waiting for its clones' hosts), a hangup only ends the connection.
func serve(srv *ttrpc.Server, l net.Listener, destroyed, owned <-chan struct{}, wait time.Duration, log *slog.Logger) error {
	owner := &ownerListener{Listener: l, owned: owned, gone: make(chan struct{})}
	dl := agentproto.NewDrainingListener(owner)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(context.Background(), dl) }()
	select {
	case err := <-served:
		return err
	case <-owner.gone:
		log.Warn("the host hung up without destroying the sandbox: powering off")
		return nil
	case <-destroyed:
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := dl.Drain(ctx); err != nil {
		log.Warn("powering off before the host hung up", "err", err)
	}
	return nil
}

// ownerListener closes gone when a connection that carried requests ends
// while owned is closed: the host's owner hung up. A connection that ends
// before any byte came is a serial port whose host end is not connected
// yet, reopened later; one that ends before owned is closed is a template's
// host, gone before the template is saved.
type ownerListener struct {
	net.Listener
	owned <-chan struct{}
	once  sync.Once
	gone  chan struct{}
}

func (l *ownerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &ownerConn{Conn: c, l: l}, nil
}

type ownerConn struct {
	net.Conn
	l    *ownerListener
	used atomic.Bool
}

func (c *ownerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.used.Store(true)
	}
	return n, err
}

func (c *ownerConn) Close() error {
	if c.used.Load() && isClosed(c.l.owned) {
		c.l.once.Do(func() { close(c.l.gone) })
	}
	return c.Conn.Close()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// setup is boot work that runs beside serving; wait returns its outcome.
type setup struct {
	done chan struct{}
	err  error
}

func newSetup() *setup { return &setup{done: make(chan struct{})} }

// start runs f in the background; call it once.
func (s *setup) start(f func() error) {
	go func() {
		defer close(s.done)
		s.err = f()
	}()
}

func (s *setup) wait(ctx context.Context) error {
	select {
	case <-s.done:
		return s.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func listen(boot BootConfig) (net.Listener, error) {
	if boot.VsockPort != 0 {
		return agentproto.ListenVsock(boot.VsockPort)
	}
	deadline := time.Now().Add(portTimeout)
	for {
		path, err := agentproto.FindSerialPort("/", boot.PortName)
		if err == nil {
			return agentproto.ListenSerial(path), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// PowerOff syncs and ends the VM; it does not return. It reboots rather
// than powers off: hull always runs QEMU with -no-reboot, which turns a
// reboot into QEMU's exit, and a reboot needs no ACPI (microvm has none).
func PowerOff() {
	// A share whose server is gone (virtiofsd died with hull's monitor)
	// never completes the sync: the VM ends all the same.
	synced := make(chan struct{})
	go func() {
		unix.Sync()
		close(synced)
	}()
	select {
	case <-synced:
	case <-time.After(syncWait):
	}
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// syncWait bounds how long PowerOff waits for the file systems to sync.
const syncWait = 3 * time.Second

// kmsgTrace returns a function that writes boot milestones to the kernel
// log, where printk timestamps place them among the kernel's own (debug
// only: hull.debug=1 on the kernel command line).
func kmsgTrace(started time.Time) func(string) {
	f, err := os.OpenFile("/dev/kmsg", os.O_WRONLY, 0)
	if err != nil {
		return func(string) {}
	}
	return func(msg string) {
		fmt.Fprintf(f, "<4>%s (%.1f ms after the agent's main)\n", msg, float64(time.Since(started).Microseconds())/1000)
	}
}

// rootIsRAM reports whether the guest's root is the initramfs, which
// pivot_root cannot leave.
func rootIsRAM() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err != nil {
		return true
	}
	return st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC
}
