package guest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"

	runc "github.com/containerd/go-runc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

// Version is the agent's version, set by the build.
var Version = "dev"

// Runtime is the part of runc the agent uses; *runc.Runc is the real one.
type Runtime interface {
	Create(ctx context.Context, id, bundle string, opts *runc.CreateOpts) error
	Start(ctx context.Context, id string) error
	Exec(ctx context.Context, id string, spec specs.Process, opts *runc.ExecOpts) error
	Kill(ctx context.Context, id string, sig int, opts *runc.KillOpts) error
	Delete(ctx context.Context, id string, opts *runc.DeleteOpts) error
	Pause(ctx context.Context, id string) error
	Resume(ctx context.Context, id string) error
	Update(ctx context.Context, id string, resources *specs.LinuxResources) error
	Ps(ctx context.Context, id string) ([]int, error)
}

// Config is what a Service needs from its surroundings.
type Config struct {
	// Runtime returns the runc to use for a container, logging to log.
	Runtime func(log string) Runtime
	Reaper  *Reaper
	// ShareDir is where the sandbox share is mounted.
	ShareDir string
	// BundleDir holds one bundle directory per container.
	BundleDir string
	// CgroupRoot is the v1 cgroup mount (for stats).
	CgroupRoot string
	// ProcSys is where sysctls are written ("/proc/sys" in the guest).
	ProcSys string
	// NoPivot: the guest's root is an initramfs, where pivot_root is
	// impossible; runc then moves the rootfs and chroots (as Kata's agent
	// does), which leaves every mount in the container private.
	NoPivot bool
	// Ready waits for the boot-time setup containers need (loopback, the
	// share) and returns its error; nil means always ready.
	Ready func(context.Context) error
	// StartClone makes a restored clone of a VM template the sandbox's own
	// (see agentproto's StartClone); nil in a guest that is no template.
	StartClone func(context.Context, *agentproto.StartCloneRequest) error
	Log        *slog.Logger
}

// Service implements agentproto.AgentService. Its errors say what failed in
// the guest; the caller, which knows the request, names it and the container.
type Service struct {
	cfg Config

	mu         sync.Mutex
	containers map[string]*container
	// released are share paths of removed containers that the guest may
	// still have cached (see sweepReleased).
	released []string
	// ports are the forwarded connections (ports.go).
	ports ports

	destroy   sync.Once
	destroyed chan struct{}
	// cloned is set by the first StartClone.
	cloned atomic.Bool
}

type container struct {
	id     string
	bundle string
	runc   Runtime
	init   *process
	// shared are the paths in the share it uses: its rootfs, its volumes.
	shared []string

	// Guarded by Service.mu. A nil entry in execs reserves an exec ID
	// whose process is still starting. removed is set when
	// RemoveContainer takes the container out of the service; an exec
	// that finishes starting after that releases its own process.
	execs   map[string]*process
	removed bool
}

var _ agentproto.AgentService = (*Service)(nil)

// NewService returns an agent service running containers through cfg.Runtime.
func NewService(cfg Config) *Service {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Ready == nil {
		cfg.Ready = func(context.Context) error { return nil }
	}
	return &Service{cfg: cfg, containers: map[string]*container{}, destroyed: make(chan struct{})}
}

func errNotFound(what string) error { return status.Errorf(codes.NotFound, "%s does not exist", what) }

// Health answers once the agent serves.
func (s *Service) Health(context.Context, *agentproto.HealthRequest) (*agentproto.HealthResponse, error) {
	return &agentproto.HealthResponse{Version: Version}, nil
}

// CreateContainer writes the guest bundle and runs `runc create`.
func (s *Service) CreateContainer(ctx context.Context, req *agentproto.CreateContainerRequest) (*agentproto.Empty, error) {
	if err := validID(req.ContainerId); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var spec specs.Spec
	if err := json.Unmarshal(req.Spec, &spec); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "spec: %v", err)
	}
	if err := s.cfg.Ready(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "guest setup: %v", err)
	}
	s.sweepReleased()
	if err := toGuestSpec(&spec, req.ContainerId, s.cfg.ShareDir); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if err := joinContainerNamespaces(&spec, s.initPID); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	if err := setSysctls(s.cfg.ProcSys, takeNetSysctls(&spec)); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	s.mu.Lock()
	if _, ok := s.containers[req.ContainerId]; ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "container %s already exists", req.ContainerId)
	}
	bundle := filepath.Join(s.cfg.BundleDir, req.ContainerId)
	c := &container{id: req.ContainerId, bundle: bundle, runc: s.cfg.Runtime(filepath.Join(bundle, "log.json")),
		shared: sharePaths(&spec, s.cfg.ShareDir), execs: map[string]*process{}}
	s.containers[c.id] = c // reserve the ID
	s.mu.Unlock()

	p, err := s.create(ctx, c, &spec, req.Stdin)
	if err != nil {
		s.mu.Lock()
		delete(s.containers, c.id)
		s.mu.Unlock()
		_ = os.RemoveAll(c.bundle)
		return nil, status.Error(codes.Unknown, err.Error())
	}
	s.mu.Lock()
	c.init = p
	s.mu.Unlock()
	return &agentproto.Empty{}, nil
}

func (s *Service) create(ctx context.Context, c *container, spec *specs.Spec, stdin bool) (*process, error) {
	if err := os.MkdirAll(c.bundle, 0o700); err != nil {
		return nil, err
	}
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(c.bundle, "config.json"), b, 0o600); err != nil {
		return nil, err
	}
	sio, err := newStdio(spec.Process.Terminal, stdin)
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(c.bundle, "init.pid")
	opts := &runc.CreateOpts{PidFile: pidFile, IO: sio.io, NoPivot: s.cfg.NoPivot}
	if sio.socket != nil {
		opts.ConsoleSocket = sio.socket
	}
	if err := c.runc.Create(ctx, c.id, c.bundle, opts); err != nil {
		sio.close()
		return nil, runcError(err, c.bundle)
	}
	cg := s.cgroup(c.id)
	p, err := s.track(pidFile, sio, func() bool { return cg.oomKills() > 0 })
	if err != nil {
		_ = c.runc.Delete(context.Background(), c.id, &runc.DeleteOpts{Force: true})
		return nil, err
	}
	if err := setPropagation(p.pid, propagations(spec)); err != nil {
		_ = c.runc.Delete(context.Background(), c.id, &runc.DeleteOpts{Force: true})
		return nil, err
	}
	return p, nil
}

// track reads the PID runc wrote, attaches the streams and starts waiting
// for the exit. oomKilled, if set, is asked once the process has exited and
// before any waiter hears of it: for an init process, its container's cgroup
// is still there then, as only runc delete removes it, which RemoveContainer
// (but for force) runs only after the exit.
func (s *Service) track(pidFile string, sio *stdio, oomKilled func() bool) (*process, error) {
	pid, err := runc.ReadPidFile(pidFile)
	if err != nil {
		sio.close()
		return nil, fmt.Errorf("read pid file: %w", err)
	}
	p := &process{pid: pid, exited: make(chan struct{})}
	exit := s.cfg.Reaper.Subscribe(pid)
	if err := sio.attach(p); err != nil {
		sio.close()
		return nil, fmt.Errorf("attach stdio: %w", err)
	}
	go func() {
		e := <-exit
		p.status = e.Status
		if oomKilled != nil {
			p.oomKilled = oomKilled()
		}
		close(p.exited)
		s.cfg.Log.Debug("process exited", "pid", pid, "status", e.Status, "oom_killed", p.oomKilled)
	}()
	return p, nil
}

// runcError adds runc's own last error line (from its log) to err.
func runcError(err error, bundle string) error {
	b, rerr := os.ReadFile(filepath.Join(bundle, "log.json"))
	if rerr != nil {
		return err
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		var l struct{ Level, Msg string }
		if json.Unmarshal([]byte(lines[i]), &l) == nil && l.Level == "error" {
			return fmt.Errorf("%s", l.Msg)
		}
	}
	return err
}

// initPID is the guest PID of a live container's init process.
func (s *Service) initPID(id string) (int, error) {
	c, err := s.container(id)
	if err != nil {
		return 0, err
	}
	select {
	case <-c.init.exited:
		return 0, fmt.Errorf("container %s has exited", id)
	default:
		return c.init.pid, nil
	}
}

func (s *Service) container(id string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.containerLocked(id)
}

// containerLocked is container for a caller holding s.mu.
func (s *Service) containerLocked(id string) (*container, error) {
	c, ok := s.containers[id]
	if !ok || c.init == nil {
		return nil, errNotFound("container " + id)
	}
	return c, nil
}

func (s *Service) process(cid, eid string) (*container, *process, error) {
	c, err := s.container(cid)
	if err != nil {
		return nil, nil, err
	}
	if eid == "" {
		return c, c.init, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := c.execs[eid]
	if !ok {
		return nil, nil, errNotFound("process " + eid + " of container " + cid)
	}
	return c, p, nil
}

// StartContainer runs `runc start`.
func (s *Service) StartContainer(ctx context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if err := c.runc.Start(ctx, c.id); err != nil {
		return nil, status.Error(codes.FailedPrecondition, runcError(err, c.bundle).Error())
	}
	return &agentproto.Empty{}, nil
}

// RemoveContainer deletes the container from runc and forgets it.
func (s *Service) RemoveContainer(ctx context.Context, req *agentproto.RemoveContainerRequest) (*agentproto.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	if !req.Force {
		select {
		case <-c.init.exited:
		default:
			return nil, status.Errorf(codes.FailedPrecondition, "container %s is still running", c.id)
		}
	}
	if err := c.runc.Delete(ctx, c.id, &runc.DeleteOpts{Force: req.Force}); err != nil {
		return nil, status.Error(codes.Unknown, runcError(err, c.bundle).Error())
	}
	execs, err := s.forget(c)
	if err != nil {
		return nil, err
	}
	c.init.release()
	for _, p := range execs {
		p.release()
	}
	_ = os.RemoveAll(c.bundle)
	s.release(c.shared)
	return &agentproto.Empty{}, nil
}

// release lets go of a removed container's paths in the share. While the
// guest keeps an inode of the share cached, virtiofsd keeps a file
// descriptor on it, and one in a container's rootfs holds the host's mount
// of that rootfs alive after hull removed it. Over virtio-fs each host
// mount in the share (a rootfs, a volume) is a submount in the guest,
// mounted on first access and never expired by the kernel: release
// unmounts it (over 9p nothing is mounted there: EINVAL). The entries that
// lead to it stay cached until a lookup finds them gone on the host, which
// sweepReleased does once hull has removed them. Best effort: the container
// is gone either way.
func (s *Service) release(paths []string) {
	for _, p := range paths {
		_ = unix.Unmount(p, unix.MNT_DETACH)
	}
	s.mu.Lock()
	s.released = append(s.released, paths...)
	s.mu.Unlock()
	s.sweepReleased()
}

// sweepReleased looks up the share paths of removed containers. Once hull
// has removed one on the host and the guest's cached entry has expired
// (cache=auto: a second), the lookup fails and the guest drops its entries
// below it, which tells virtiofsd to close what it holds there. A path
// that still resolves is tried again at the next create or remove.
func (s *Service) sweepReleased() {
	s.mu.Lock()
	paths := s.released
	s.released = nil
	s.mu.Unlock()
	var keep []string
	for _, p := range paths {
		if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
			keep = append(keep, p)
		}
	}
	s.mu.Lock()
	s.released = append(s.released, keep...)
	s.mu.Unlock()
}

// forget takes c out of the service and returns its started execs, whose
// streams the caller releases. Execs still starting are left to release
// their own (addExec refuses them). A concurrent remove that got there
// first makes it NotFound.
func (s *Service) forget(c *container) ([]*process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.removed {
		return nil, errNotFound("container " + c.id)
	}
	c.removed = true
	delete(s.containers, c.id)
	var started []*process
	for _, p := range c.execs {
		if p != nil {
			started = append(started, p)
		}
	}
	return started, nil
}

// PauseContainer freezes the container.
func (s *Service) PauseContainer(ctx context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	return s.runcOp(ctx, req.ContainerId, Runtime.Pause)
}

// ResumeContainer thaws the container.
func (s *Service) ResumeContainer(ctx context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	return s.runcOp(ctx, req.ContainerId, Runtime.Resume)
}

func (s *Service) runcOp(ctx context.Context, id string, op func(Runtime, context.Context, string) error) (*agentproto.Empty, error) {
	c, err := s.container(id)
	if err != nil {
		return nil, err
	}
	if err := op(c.runc, ctx, c.id); err != nil {
		return nil, status.Error(codes.FailedPrecondition, runcError(err, c.bundle).Error())
	}
	return &agentproto.Empty{}, nil
}

// UpdateContainer changes the container's cgroup limits.
func (s *Service) UpdateContainer(ctx context.Context, req *agentproto.UpdateContainerRequest) (*agentproto.Empty, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	var r specs.LinuxResources
	if err := json.Unmarshal(req.Resources, &r); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "resources: %v", err)
	}
	if err := c.runc.Update(ctx, c.id, &r); err != nil {
		return nil, status.Error(codes.Unknown, runcError(err, c.bundle).Error())
	}
	return &agentproto.Empty{}, nil
}

// StatsContainer reads the container's cgroup counters.
func (s *Service) StatsContainer(_ context.Context, req *agentproto.ContainerRequest) (*agentproto.StatsContainerResponse, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	return s.cgroup(c.id).stats(), nil
}

// ListProcesses lists the guest PIDs of the container.
func (s *Service) ListProcesses(ctx context.Context, req *agentproto.ContainerRequest) (*agentproto.ListProcessesResponse, error) {
	c, err := s.container(req.ContainerId)
	if err != nil {
		return nil, err
	}
	pids, err := c.runc.Ps(ctx, c.id)
	if err != nil {
		return nil, status.Error(codes.Unknown, runcError(err, c.bundle).Error())
	}
	out := make([]int32, len(pids))
	for i, p := range pids {
		out[i] = int32(p)
	}
	return &agentproto.ListProcessesResponse{Pids: out}, nil
}

// ExecProcess runs an extra process in a running container.
func (s *Service) ExecProcess(ctx context.Context, req *agentproto.ExecProcessRequest) (*agentproto.Empty, error) {
	if err := validID(req.ExecId); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	var proc specs.Process
	if err := json.Unmarshal(req.Process, &proc); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "process: %v", err)
	}
	proc.ApparmorProfile, proc.SelinuxLabel = "", ""
	c, err := s.reserveExec(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	p, err := s.exec(ctx, c, req.ExecId, proc, req.Stdin)
	if err != nil {
		s.mu.Lock()
		delete(c.execs, req.ExecId)
		s.mu.Unlock()
		return nil, status.Error(codes.Unknown, err.Error())
	}
	if err := s.addExec(c, req.ExecId, p); err != nil {
		p.release()
		return nil, err
	}
	return &agentproto.Empty{}, nil
}

// reserveExec holds an exec ID in a live container while its process
// starts; the lookup and the reservation are one step, so that a removal
// cannot come between them.
func (s *Service) reserveExec(cid, eid string) (*container, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, err := s.containerLocked(cid)
	if err != nil {
		return nil, err
	}
	if _, ok := c.execs[eid]; ok {
		return nil, status.Errorf(codes.AlreadyExists, "exec %s already exists in %s", eid, cid)
	}
	c.execs[eid] = nil
	return c, nil
}

// addExec fills a reservation with the started process, unless the
// container was removed meanwhile: then the caller releases p.
func (s *Service) addExec(c *container, eid string, p *process) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.removed {
		return status.Errorf(codes.NotFound, "container %s was removed while exec %s started", c.id, eid)
	}
	c.execs[eid] = p
	return nil
}

func (s *Service) exec(ctx context.Context, c *container, eid string, proc specs.Process, stdin bool) (*process, error) {
	sio, err := newStdio(proc.Terminal, stdin)
	if err != nil {
		return nil, err
	}
	pidFile := filepath.Join(c.bundle, "exec-"+eid+".pid")
	opts := &runc.ExecOpts{PidFile: pidFile, IO: sio.io, Detach: true}
	if sio.socket != nil {
		opts.ConsoleSocket = sio.socket
	}
	if err := c.runc.Exec(ctx, c.id, proc, opts); err != nil {
		sio.close()
		return nil, runcError(err, c.bundle)
	}
	defer os.Remove(pidFile)
	// An exec has no OOM verdict of its own: the cgroup's count is the
	// container's, and the exec need not be the process it counts.
	return s.track(pidFile, sio, nil)
}

// SignalProcess delivers a signal to a process, or with all to every
// process of the container.
func (s *Service) SignalProcess(ctx context.Context, req *agentproto.SignalProcessRequest) (*agentproto.Empty, error) {
	c, p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "process %s is starting", req.ExecId)
	}
	select {
	case <-p.exited:
		if !req.All || req.Signal == 0 {
			return nil, status.Errorf(codes.NotFound, "process %d has exited: no such process", p.pid)
		}
	default:
	}
	if req.Signal == 0 {
		// A liveness probe: the agent reaps every process, so it knows
		// without asking the OCI runtime (one exec of it under TCG).
		if err := unix.Kill(p.pid, 0); err != nil {
			return nil, status.Errorf(codes.NotFound, "process %d: %v", p.pid, err)
		}
		return &agentproto.Empty{}, nil
	}
	if req.ExecId == "" {
		if err := c.runc.Kill(ctx, c.id, int(req.Signal), &runc.KillOpts{All: req.All}); err != nil {
			return nil, status.Error(codes.NotFound, runcError(err, c.bundle).Error())
		}
		return &agentproto.Empty{}, nil
	}
	if err := unix.Kill(p.pid, unix.Signal(req.Signal)); err != nil {
		return nil, status.Errorf(codes.NotFound, "signal process %d: %v", p.pid, err)
	}
	return &agentproto.Empty{}, nil
}

// WaitProcess blocks until the process has exited, and says whether the
// container met the OOM killer when its init process did.
func (s *Service) WaitProcess(ctx context.Context, req *agentproto.ProcessRequest) (*agentproto.WaitProcessResponse, error) {
	_, p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "process %s is starting", req.ExecId)
	}
	select {
	case <-p.exited:
		return &agentproto.WaitProcessResponse{Status: int32(p.status), OomKilled: p.oomKilled}, nil
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

func (s *Service) liveProcess(cid, eid string) (*process, error) {
	_, p, err := s.process(cid, eid)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, status.Errorf(codes.NotFound, "process %s is starting", eid)
	}
	return p, nil
}

// WriteStdin writes to the process's stdin.
func (s *Service) WriteStdin(_ context.Context, req *agentproto.WriteStdinRequest) (*agentproto.WriteStdinResponse, error) {
	p, err := s.liveProcess(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p.stdin == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "process has no stdin")
	}
	p.stdinMu.Lock()
	defer p.stdinMu.Unlock()
	n, err := p.stdin.Write(req.Data)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "write stdin: %v", err)
	}
	return &agentproto.WriteStdinResponse{Len: uint32(n)}, nil
}

// CloseStdin closes the process's stdin (a no-op for a terminal).
func (s *Service) CloseStdin(_ context.Context, req *agentproto.ProcessRequest) (*agentproto.Empty, error) {
	p, err := s.liveProcess(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p.stdin != nil && p.console == nil {
		p.stdinMu.Lock()
		p.stdin.Close()
		p.stdinMu.Unlock()
	}
	return &agentproto.Empty{}, nil
}

// ReadStdout returns the next chunk of stdout (or the terminal's output).
func (s *Service) ReadStdout(_ context.Context, req *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error) {
	p, err := s.liveProcess(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return readResponse(read(&p.readMu, p.stdout, req.Max))
}

// ReadStderr returns the next chunk of stderr.
func (s *Service) ReadStderr(_ context.Context, req *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error) {
	p, err := s.liveProcess(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	return readResponse(read(&p.errMu, p.stderr, req.Max))
}

func readResponse(data []byte, eof bool, err error) (*agentproto.ReadStreamResponse, error) {
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read: %v", err)
	}
	return &agentproto.ReadStreamResponse{Data: data, Eof: eof}, nil
}

// ResizeTty sets the terminal's window size.
func (s *Service) ResizeTty(_ context.Context, req *agentproto.ResizeTtyRequest) (*agentproto.Empty, error) {
	p, err := s.liveProcess(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p.console == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "process has no terminal")
	}
	if err := p.console.Resize(consoleSize(req.Rows, req.Cols)); err != nil {
		return nil, status.Errorf(codes.Unknown, "resize: %v", err)
	}
	return &agentproto.Empty{}, nil
}

// CloseProcess forgets an exited exec process, so that a long-lived
// container's execs (probes, say) do not pile up in the agent.
func (s *Service) CloseProcess(_ context.Context, req *agentproto.ProcessRequest) (*agentproto.Empty, error) {
	if req.ExecId == "" {
		return nil, status.Errorf(codes.InvalidArgument, "close process: the init process goes with RemoveContainer")
	}
	c, p, err := s.process(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return nil, status.Errorf(codes.FailedPrecondition, "process %s is starting", req.ExecId)
	}
	select {
	case <-p.exited:
	default:
		return nil, status.Errorf(codes.FailedPrecondition, "process %s is still running", req.ExecId)
	}
	// Whoever takes p out of the container releases it: this call, a
	// concurrent one, or RemoveContainer.
	s.mu.Lock()
	mine := !c.removed && c.execs[req.ExecId] == p
	if mine {
		delete(c.execs, req.ExecId)
	}
	s.mu.Unlock()
	if !mine {
		return nil, errNotFound("process " + req.ExecId + " of container " + req.ContainerId)
	}
	p.release()
	return &agentproto.Empty{}, nil
}

// DestroySandbox answers; the agent then powers the VM off once the host
// has the reply (see Destroyed).
func (s *Service) DestroySandbox(context.Context, *agentproto.DestroySandboxRequest) (*agentproto.Empty, error) {
	s.destroy.Do(func() { close(s.destroyed) })
	return &agentproto.Empty{}, nil
}

// StartClone makes this guest, a restored clone of a VM template, the
// sandbox's own; a guest does it once, and only a template's.
func (s *Service) StartClone(ctx context.Context, req *agentproto.StartCloneRequest) (*agentproto.Empty, error) {
	if s.cfg.StartClone == nil {
		return nil, status.Error(codes.FailedPrecondition, "this guest was not booted as a template")
	}
	if !s.cloned.CompareAndSwap(false, true) {
		return nil, status.Error(codes.FailedPrecondition, "this clone has started already")
	}
	if err := s.cfg.StartClone(ctx, req); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &agentproto.Empty{}, nil
}

// Destroyed is closed once DestroySandbox has been called.
func (s *Service) Destroyed() <-chan struct{} { return s.destroyed }
