package pod

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/hypervisor"
)

// VM is what a sandbox needs of its hypervisor; *hypervisor.QEMU is the real
// one and unit tests use a fake.
type VM interface {
	Start(ctx context.Context) error
	// WaitAgentPort returns once the guest listens on the agent channel.
	WaitAgentPort(ctx context.Context) error
	Stop(ctx context.Context) error
	Done() <-chan struct{}
	PID() int
}

// VMFactory makes the VM of a sandbox from its hypervisor configuration.
type VMFactory func(cfg hypervisor.Config, log *slog.Logger, t hypervisor.Timeouts) VM

// QEMUFactory starts real QEMU processes.
func QEMUFactory(cfg hypervisor.Config, log *slog.Logger, t hypervisor.Timeouts) VM {
	return hypervisor.New(cfg, hypervisor.WithLogger(log), hypervisor.WithTimeouts(t))
}

// SandboxOptions describe a sandbox to start.
type SandboxOptions struct {
	ID string
	// Dir is the sandbox's private state directory; it must not exist.
	Dir    string
	Config Config
	// VCPUs and MemoryMiB size the VM; zero means the configured defaults.
	VCPUs     int
	MemoryMiB int
	// NetNS is the network namespace whose interfaces the VM takes over
	// ("" for none).
	NetNS string
	NewVM VMFactory
	Log   *slog.Logger
}

// Sandbox is a running VM with its agent connection and share.
type Sandbox struct {
	ID    string
	Dir   string
	Accel hypervisor.Accel
	// Timings records how long each start-up step took.
	Timings []Step

	cfg     Config
	share   *Share
	network *Network
	vm      VM
	// fsd serves the share over virtio-fs; nil for virtio-9p, which QEMU
	// serves itself.
	fsd   *hypervisor.Virtiofsd
	agent *agentproto.Client
	// ports forwards the network namespace's localhost to the guest (the
	// CRI's PortForward); nil without a namespace, or where that failed.
	ports *PortForwarder
	log   *slog.Logger
	// ended receives why the sandbox ended by itself (Ended).
	endOnce sync.Once
	ended   chan string
}

// Step is one named start-up step and its duration.
type Step struct {
	Name string
	Took time.Duration
}

// Files of a sandbox directory.
const (
	qmpSocket   = "qmp.sock"
	agentSocket = "agent.sock"
	consoleLog  = "console.log"
	shareDir    = "share"
	qemuRoot    = "qemu-root"
	// virtiofsd's vhost-user socket and stderr.
	virtiofsdSocket = "virtiofsd.sock"
	virtiofsdLog    = "virtiofsd.log"
)

// StartSandbox boots a VM and returns once its agent answers. On error
// nothing it made is left: no QEMU, no mount, no directory.
func StartSandbox(ctx context.Context, o SandboxOptions) (_ *Sandbox, err error) {
	if o.NewVM == nil {
		o.NewVM = QEMUFactory
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sandbox{ID: o.ID, Dir: o.Dir, cfg: o.Config, log: o.Log, share: NewShare(filepath.Join(o.Dir, shareDir))}
	if err := os.MkdirAll(filepath.Dir(o.Dir), 0o700); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", o.ID, err)
	}
	if err := os.Mkdir(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start sandbox %s: %w", o.ID, err)
	}
	defer func() {
		if err != nil {
			_ = s.teardown(context.Background())
			err = fmt.Errorf("start sandbox %s: %w", o.ID, err)
		}
	}()
	last := time.Now()
	step := func(name string) {
		now := time.Now()
		s.Timings = append(s.Timings, Step{name, now.Sub(last)})
		last = now
	}
	// Choosing the accelerator probes KVM or times the host's TSC (a few
	// ms); it runs while the share and the network are set up.
	h := o.Config.Hypervisor
	type accelResult struct {
		accel hypervisor.Accel
		err   error
	}
	accelCh := make(chan accelResult, 1)
	go func() {
		a, err := hypervisor.ResolveAccel(h.Accel, h.KVMDevice, h.KVMProbeLimit.Duration)
		accelCh <- accelResult{a, err}
	}()
	if err := s.share.Setup(); err != nil {
		return nil, err
	}
	step("share")
	if o.NetNS != "" {
		if s.network, err = SetupNetwork(o.NetNS); err != nil {
			return nil, err
		}
		step("network")
	}
	if o.Config.SharedFS.Type == SharedFSVirtioFS {
		s.fsd = hypervisor.NewVirtiofsd(s.virtiofsdConfig(), o.Log)
		if err := s.fsd.Start(); err != nil {
			return nil, err
		}
		step("virtiofsd")
	}
	ar := <-accelCh
	if ar.err != nil {
		return nil, ar.err
	}
	s.Accel = ar.accel
	o.Log.Debug("accelerator", "accel", s.Accel.Name, "why", s.Accel.Reason)
	step("accel")
	hc := s.hypervisorConfig(o)
	if hc.Confine.Chroot != "" {
		// Empty and root's: all QEMU sees of the host once it runs.
		if err := os.Mkdir(hc.Confine.Chroot, 0o555); err != nil {
			return nil, fmt.Errorf("qemu chroot: %w", err)
		}
	}
	t := o.Config.Timeouts
	s.vm = o.NewVM(hc, o.Log, hypervisor.Timeouts{QMP: t.QMP.Duration, Powerdown: t.Powerdown.Duration, Quit: t.Quit.Duration})
	if err := s.vm.Start(ctx); err != nil {
		return nil, err
	}
	step("qemu")
	bootCtx, cancel := context.WithTimeout(ctx, t.Boot.Duration)
	defer cancel()
	conn, err := s.dialAgent(bootCtx)
	if err != nil {
		return nil, err
	}
	s.agent = agentproto.NewClient(conn)
	if err := s.vm.WaitAgentPort(bootCtx); err != nil {
		return nil, s.WithConsole(err)
	}
	if _, err := s.agent.Health(bootCtx, &agentproto.HealthRequest{}); err != nil {
		return nil, s.WithConsole(fmt.Errorf("agent health: %w", err))
	}
	step("agent")
	if s.network != nil {
		s.network.ReleaseTaps()
		if err := s.configureGuestNetwork(bootCtx); err != nil {
			return nil, err
		}
		step("guest network")
	}
	if o.NetNS != "" {
		// kubectl port-forward dials localhost in the namespace. A
		// sandbox that cannot have it (no iptables on the host) still
		// runs.
		ports, perr := StartPortForwarder(o.NetNS, s.agent, o.Log)
		if perr != nil {
			o.Log.Warn("kubectl port-forward will not reach this sandbox", "sandbox", o.ID, "err", perr)
		}
		s.ports = ports
		step("port forward")
	}
	return s, nil
}

func (s *Sandbox) hypervisorConfig(o SandboxOptions) hypervisor.Config {
	h := o.Config.Hypervisor
	vcpus, mem := o.VCPUs, o.MemoryMiB
	if vcpus == 0 {
		vcpus = h.DefaultVCPUs
	}
	if mem == 0 {
		mem = h.DefaultMemory
	}
	params := []string{"console=ttyS0", "panic=1"}
	params = append(params, s.Accel.KernelParams...)
	params = append(params, strings.Fields(h.KernelParams)...)
	agent := hypervisor.AgentDevice{Transport: o.Config.Agent.Transport}
	switch agent.Transport {
	case hypervisor.TransportVsock:
		agent.GuestCID = vsockCID(o.ID)
		params = append(params, fmt.Sprintf("hull.vsock=%d", o.Config.Agent.VsockPort))
	default:
		agent.SocketPath = filepath.Join(o.Dir, agentSocket)
		agent.PortName = o.Config.Agent.PortName
		params = append(params, "hull.port="+agent.PortName)
	}
	tag, guestFS := o.Config.SharedFS.Tag, "9p"
	if s.fsd != nil {
		guestFS = "virtiofs"
	}
	params = append(params, "hull.share="+tag, "hull.sharefs="+guestFS)
	if o.Config.Runtime.Debug {
		params = append(params, "hull.debug=1")
	}
	hc := hypervisor.Config{
		Path: h.Path, Machine: h.Machine, Accel: s.Accel.Name, CPUModel: s.Accel.CPUModel,
		VCPUs: vcpus, MemoryMiB: mem, TBSizeMiB: h.TCGTBSize, Kernel: h.Kernel, Initrd: h.Initrd, RootDir: h.GuestRoot, KernelParams: params,
		QMPSocket:  filepath.Join(o.Dir, qmpSocket),
		ConsoleLog: filepath.Join(o.Dir, consoleLog),
		Agent:      agent,
		NICs:       s.network.NICs(),
	}
	if s.fsd != nil {
		hc.VirtioFS = &hypervisor.VirtioFSDevice{Socket: filepath.Join(o.Dir, virtiofsdSocket), Tag: tag}
	} else {
		hc.Share = &hypervisor.ShareDevice{Path: s.share.ExportDir(), Tag: tag}
	}
	var why []string
	hc.Confine, why = QEMUConfinement(o.Config, o.Dir)
	o.Log.Debug("qemu confinement", "seccomp", hc.Confine.Seccomp, "deny_set_id", hc.Confine.ElevatePrivilegesDenied(),
		"chroot", hc.Confine.Chroot, "user", hc.Confine.User, "not_applied", strings.Join(why, "; "))
	return hc
}

// virtiofsdConfig serves the share's export dir, the read-only view of the
// per-container mounts, as QEMU's 9p export does.
func (s *Sandbox) virtiofsdConfig() hypervisor.VirtiofsdConfig {
	return hypervisor.VirtiofsdConfig{
		Path:   s.cfg.SharedFS.Virtiofsd,
		Source: s.share.ExportDir(),
		Socket: filepath.Join(s.Dir, virtiofsdSocket),
		Log:    filepath.Join(s.Dir, virtiofsdLog),
		Debug:  s.cfg.Runtime.Debug,
	}
}

// vsockCID derives a guest CID (≥ 3) from the sandbox ID.
func vsockCID(id string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(id); i++ {
		h = (h ^ uint32(id[i])) * 16777619
	}
	return 3 + h%(1<<31)
}

func (s *Sandbox) dialAgent(ctx context.Context) (net.Conn, error) {
	if s.cfg.Agent.Transport == hypervisor.TransportVsock {
		return agentproto.DialVsock(ctx, vsockCID(s.ID), s.cfg.Agent.VsockPort)
	}
	return agentproto.DialUnix(ctx, filepath.Join(s.Dir, agentSocket))
}

// WithConsole appends the end of the guest console to err: when the guest
// never answers, that is where the reason is.
func (s *Sandbox) WithConsole(err error) error {
	b, rerr := os.ReadFile(filepath.Join(s.Dir, consoleLog))
	if rerr != nil || len(b) == 0 {
		return err
	}
	if len(b) > 1024 {
		b = b[len(b)-1024:]
	}
	return fmt.Errorf("%w; guest console ends with: %s", err, strings.TrimSpace(string(b)))
}

// Agent is the sandbox's agent client.
func (s *Sandbox) Agent() *agentproto.Client { return s.agent }

// VM is the sandbox's hypervisor.
func (s *Sandbox) VM() VM { return s.vm }

// Share is the sandbox's share directory.
func (s *Sandbox) Share() *Share { return s.share }

// Virtiofsd is the process serving the share over virtio-fs, nil when QEMU
// serves it over 9p.
func (s *Sandbox) Virtiofsd() *hypervisor.Virtiofsd { return s.fsd }

// FileServerDone is closed when the sandbox's virtiofsd exits; it never is
// for a 9p share, which QEMU serves (QEMU's exit is VM().Done()).
func (s *Sandbox) FileServerDone() <-chan struct{} {
	if s.fsd == nil {
		return nil
	}
	return s.fsd.Done()
}

// Why a sandbox ended by itself, as Ended reports it.
const (
	EndQEMU      = "qemu exited"
	EndVirtiofsd = "virtiofsd exited"
	EndAgent     = "agent connection lost"
)

// Ended delivers why the sandbox ended by itself, once one of these has
// happened: its QEMU exited, its virtiofsd exited, or its agent connection
// was lost. Every call returns the same channel.
func (s *Sandbox) Ended() <-chan string {
	s.endOnce.Do(func() {
		s.ended = make(chan string, 1)
		go func() {
			select {
			case <-s.vm.Done():
				s.ended <- EndQEMU
			case <-s.FileServerDone():
				s.ended <- EndVirtiofsd
			case <-s.agent.Done():
				s.ended <- EndAgent
			}
		}()
	})
	return s.ended
}

// Stop powers the VM off and removes everything the sandbox made.
func (s *Sandbox) Stop(ctx context.Context) error {
	if err := s.teardown(ctx); err != nil {
		return fmt.Errorf("stop sandbox %s: %w", s.ID, err)
	}
	return nil
}

func (s *Sandbox) teardown(ctx context.Context) error {
	// Forwarded connections end while the agent still answers, so that
	// the guest's ends are closed. A rule that cannot be removed is
	// reported, not fatal: the namespace is its owner's, who removes it.
	if err := s.ports.Stop(); err != nil {
		s.log.Warn("port forward", "sandbox", s.ID, "err", err)
	}
	s.ports = nil
	var errs []error
	if s.agent != nil && s.vm != nil {
		select {
		case <-s.vm.Done():
		default:
			s.powerOffGuest(ctx)
		}
	}
	if s.vm != nil {
		errs = append(errs, s.vm.Stop(ctx))
	}
	if s.fsd != nil {
		// It exits by itself once QEMU hangs up; SIGTERM if it has not.
		qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Quit.Duration)
		errs = append(errs, s.fsd.Stop(qctx))
		cancel()
	}
	if s.agent != nil {
		_ = s.agent.Close()
	}
	errs = append(errs, s.network.Teardown())
	if err := s.share.Teardown(); err != nil {
		// Keep the directory: removing it could reach through a mount
		// that is still there into host files.
		return errors.Join(append(errs, err)...)
	}
	if err := os.RemoveAll(s.Dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// powerOffGuest asks the agent to end the VM and waits, up to the
// power-down timeout, for QEMU to exit. It hangs up as soon as the reply is
// in: that is the agent's cue to power off.
func (s *Sandbox) powerOffGuest(ctx context.Context) {
	dctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Powerdown.Duration)
	defer cancel()
	_, err := s.agent.DestroySandbox(dctx, &agentproto.DestroySandboxRequest{})
	_ = s.agent.Close()
	if err != nil {
		return
	}
	select {
	case <-s.vm.Done():
	case <-dctx.Done():
	}
}

func (s *Sandbox) configureGuestNetwork(ctx context.Context) error {
	if _, err := s.agent.UpdateInterfaces(ctx, &agentproto.UpdateInterfacesRequest{Interfaces: s.network.GuestInterfaces()}); err != nil {
		return fmt.Errorf("guest interfaces: %w", err)
	}
	if len(s.network.Routes) > 0 {
		if _, err := s.agent.UpdateRoutes(ctx, &agentproto.UpdateRoutesRequest{Routes: s.network.Routes}); err != nil {
			return fmt.Errorf("guest routes: %w", err)
		}
	}
	return nil
}

// ShareOf is the share of the sandbox whose directory is dir, for a caller
// that does not hold its Sandbox (the CLI's, whose monitor does).
func ShareOf(dir string) *Share { return NewShare(filepath.Join(dir, shareDir)) }
