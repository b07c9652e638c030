package pod

import (
	"context"
	"crypto/rand"
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
	// Restore loads a VM template's saved state into a VM started to
	// receive one, and runs it.
	Restore(ctx context.Context, statePath string) error
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
	// Template is the hash of the VM template the sandbox is a clone of,
	// "" when it booted.
	Template string

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
	bootCtx, cancel := context.WithTimeout(ctx, t.Boot.Duration)
	defer cancel()
	if !o.Config.Factory.Template || !s.startFromTemplate(ctx, o, step) {
		if err := s.boot(bootCtx, o, hc, step); err != nil {
			return nil, err
		}
	}
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

// boot starts the VM from its kernel and waits for its agent.
func (s *Sandbox) boot(ctx context.Context, o SandboxOptions, hc hypervisor.Config, step func(string)) error {
	if err := s.startVM(ctx, o, hc, step); err != nil {
		return err
	}
	if err := s.vm.WaitAgentPort(ctx); err != nil {
		return s.WithConsole(err)
	}
	if _, err := s.agent.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		return s.WithConsole(fmt.Errorf("agent health: %w", err))
	}
	step("agent")
	return nil
}

// startVM starts QEMU with hc and connects to its agent socket.
func (s *Sandbox) startVM(ctx context.Context, o SandboxOptions, hc hypervisor.Config, step func(string)) error {
	t := o.Config.Timeouts
	s.vm = o.NewVM(hc, o.Log, hypervisor.Timeouts{QMP: t.QMP.Duration, Powerdown: t.Powerdown.Duration, Quit: t.Quit.Duration})
	if err := s.vm.Start(ctx); err != nil {
		return err
	}
	step("qemu")
	conn, err := s.dialAgent(ctx)
	if err != nil {
		return err
	}
	s.agent = agentproto.NewClient(conn)
	return nil
}

// startFromTemplate starts the VM as a clone of the factory's VM template
// when there is one of the sandbox's shape, and reports whether it did. A
// clone that fails is discarded, with a log line that says why, and the
// sandbox boots cold: the template is never why a sandbox fails.
func (s *Sandbox) startFromTemplate(ctx context.Context, o SandboxOptions, step func(string)) bool {
	hc := vmConfig(vmParams{ID: o.ID, Dir: o.Dir, Config: o.Config, Accel: s.Accel, VCPUs: o.VCPUs, MemoryMiB: o.MemoryMiB,
		NICs: s.network.NICs(), ShareExport: s.share.ExportDir(), VirtioFS: s.fsd != nil, Template: true, Log: o.Log})
	shape, err := shapeOf(hc, s.Accel)
	if err != nil {
		o.Log.Debug("sandbox boots cold", "sandbox", o.ID, "why", err)
		return false
	}
	dir := o.Config.Factory.Dir
	tmpl, err := findTemplate(dir, shape)
	if err != nil {
		o.Log.Debug("sandbox boots cold", "sandbox", o.ID, "why", err)
		return false
	}
	hc.RAM = &hypervisor.RAMFile{Path: tmpl.MemoryPath(dir)}
	hc.Incoming = true
	if n := o.Config.Factory.TCGTBSize; n > 0 {
		hc.TBSizeMiB = n
	}
	rctx, cancel := context.WithTimeout(ctx, o.Config.Timeouts.Restore.Duration)
	defer cancel()
	if err := s.clone(rctx, o, hc, tmpl.StatePath(dir), step); err != nil {
		o.Log.Warn("sandbox boots cold: its clone of the VM template failed", "sandbox", o.ID, "template", tmpl.Hash, "err", err)
		s.discardVM(ctx)
		step("failed clone")
		return false
	}
	s.Template = tmpl.Hash
	o.Log.Debug("sandbox started from the VM template", "sandbox", o.ID, "template", tmpl.Hash)
	return true
}

// clone starts the VM as a clone: QEMU with the template's device model and
// RAM, the template's device state loaded into it, and the agent told to
// take the sandbox as its own.
func (s *Sandbox) clone(ctx context.Context, o SandboxOptions, hc hypervisor.Config, state string, step func(string)) error {
	// Connected before the restore: QEMU then tells the restored guest at
	// once that its host is there.
	if err := s.startVM(ctx, o, hc, step); err != nil {
		return err
	}
	if err := s.vm.Restore(ctx, state); err != nil {
		return err
	}
	step("restore")
	if _, err := s.agent.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		return s.WithConsole(fmt.Errorf("agent health: %w", err))
	}
	step("agent")
	entropy := make([]byte, cloneEntropy)
	if _, err := rand.Read(entropy); err != nil {
		return fmt.Errorf("entropy for the clone: %w", err)
	}
	if _, err := s.agent.StartClone(ctx, &agentproto.StartCloneRequest{Entropy: entropy, UnixNano: time.Now().UnixNano(),
		Nics: s.network.CloneAddresses()}); err != nil {
		return s.WithConsole(fmt.Errorf("start clone: %w", err))
	}
	step("clone start")
	return nil
}

// cloneEntropy is how many random bytes a clone's kernel gets from the
// host: twice a full CRNG reseed.
const cloneEntropy = 64

// discardVM ends a VM that did not start, so that another can.
func (s *Sandbox) discardVM(ctx context.Context) {
	if s.agent != nil {
		_ = s.agent.Close()
		s.agent = nil
	}
	if s.vm != nil {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.Timeouts.Quit.Duration)
		_ = s.vm.Stop(qctx)
		cancel()
		s.vm = nil
	}
}

func (s *Sandbox) hypervisorConfig(o SandboxOptions) hypervisor.Config {
	return vmConfig(vmParams{ID: o.ID, Dir: o.Dir, Config: o.Config, Accel: s.Accel, VCPUs: o.VCPUs, MemoryMiB: o.MemoryMiB,
		NICs: s.network.NICs(), ShareExport: s.share.ExportDir(), VirtioFS: s.fsd != nil, Log: o.Log})
}

// vmParams are what a VM's hypervisor configuration is made of.
type vmParams struct {
	ID  string
	Dir string
	// Config is hull's configuration; VCPUs and MemoryMiB override its
	// defaults when not zero.
	Config    Config
	Accel     hypervisor.Accel
	VCPUs     int
	MemoryMiB int
	NICs      []hypervisor.NIC
	// ShareExport is the directory the share exports; VirtioFS serves it
	// over virtio-fs (virtiofsd's socket in Dir) rather than 9p.
	ShareExport string
	VirtioFS    bool
	// Template boots the guest to be saved as a VM template or to be its
	// clone (hull.template=1): the two need the same kernel command line.
	Template bool
	Log      *slog.Logger
}

// vmConfig is the hypervisor configuration of a sandbox's VM.
func vmConfig(v vmParams) hypervisor.Config {
	h := v.Config.Hypervisor
	vcpus, mem := v.VCPUs, v.MemoryMiB
	if vcpus == 0 {
		vcpus = h.DefaultVCPUs
	}
	if mem == 0 {
		mem = h.DefaultMemory
	}
	params := []string{"console=ttyS0", "panic=1"}
	params = append(params, v.Accel.KernelParams...)
	params = append(params, hullKernelParams(v.Config, v.VirtioFS, v.Template)...)
	agent := hypervisor.AgentDevice{Transport: v.Config.Agent.Transport}
	switch agent.Transport {
	case hypervisor.TransportVsock:
		agent.GuestCID = vsockCID(v.ID)
	default:
		agent.SocketPath = filepath.Join(v.Dir, agentSocket)
		agent.PortName = v.Config.Agent.PortName
	}
	hc := hypervisor.Config{
		Path: h.Path, Machine: h.Machine, Accel: v.Accel.Name, CPUModel: v.Accel.CPUModel,
		VCPUs: vcpus, MemoryMiB: mem, TBSizeMiB: h.TCGTBSize, Kernel: h.Kernel, Initrd: h.Initrd, RootDir: h.GuestRoot, KernelParams: params,
		QMPSocket:  filepath.Join(v.Dir, qmpSocket),
		ConsoleLog: filepath.Join(v.Dir, consoleLog),
		Agent:      agent,
		NICs:       v.NICs,
	}
	tag := v.Config.SharedFS.Tag
	if v.VirtioFS {
		hc.VirtioFS = &hypervisor.VirtioFSDevice{Socket: filepath.Join(v.Dir, virtiofsdSocket), Tag: tag}
	} else {
		hc.Share = &hypervisor.ShareDevice{Path: v.ShareExport, Tag: tag}
	}
	var why []string
	hc.Confine, why = QEMUConfinement(v.Config, v.Dir)
	v.Log.Debug("qemu confinement", "seccomp", hc.Confine.Seccomp, "deny_set_id", hc.Confine.ElevatePrivilegesDenied(),
		"chroot", hc.Confine.Chroot, "user", hc.Confine.User, "not_applied", strings.Join(why, "; "))
	return hc
}

// hullKernelParams are the configured kernel parameters and hull's own
// (hull.*): the agent channel, the share, debug, template.
func hullKernelParams(c Config, virtioFS, template bool) []string {
	params := strings.Fields(c.Hypervisor.KernelParams)
	if c.Agent.Transport == hypervisor.TransportVsock {
		params = append(params, fmt.Sprintf("hull.vsock=%d", c.Agent.VsockPort))
	} else {
		params = append(params, "hull.port="+c.Agent.PortName)
	}
	guestFS := "9p"
	if virtioFS {
		guestFS = "virtiofs"
	}
	params = append(params, "hull.share="+c.SharedFS.Tag, "hull.sharefs="+guestFS)
	if c.Runtime.Debug {
		params = append(params, "hull.debug=1")
	}
	if template {
		params = append(params, "hull.template=1")
	}
	return params
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
