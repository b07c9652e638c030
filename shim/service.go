package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	taskapi "github.com/containerd/containerd/api/runtime/task/v2"
	"github.com/containerd/containerd/api/types/task"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// Frontend is how records name the shim.
const Frontend = "containerd-shim-hull-v2"

// Options configure the task service of one pod shim.
type Options struct {
	// Namespace is containerd's namespace, ID the pod's sandbox ID.
	Namespace string
	ID        string
	Layout    Layout
	// ConfigPath is the hull configuration the runtime's options named at
	// start; a Create's options may name one too. "" is hull's default.
	ConfigPath string
	// ConfigEnv is $HULL_CONFIG, the default's override.
	ConfigEnv string
	Publisher Publisher
	Log       *slog.Logger
	// NewVM makes the VM (nil: QEMU).
	NewVM pod.VMFactory
	// Exit is called once Shutdown has decided the shim ends.
	Exit func()
}

// Service is the task API of one pod shim: the pod's VM and its containers.
type Service struct {
	o   Options
	dir string

	// startMu serialises the creation of the sandbox with every Create.
	startMu sync.Mutex

	mu         sync.Mutex
	sb         *pod.Sandbox
	guest      *pod.Guest
	state      podState
	containers map[string]*container
	// dead closes when the VM is gone, however it went.
	dead     chan struct{}
	deadOnce sync.Once
	stopped  bool
	exiting  bool
}

// container is one task: its init process and its execs.
type container struct {
	id, bundle string
	spec       *specs.Spec
	record     pod.Record
	rootfs     string // where the shim mounted the snapshot ("" for none)
	init       *process
	execs      map[string]*process
	status     task.Status
}

// process is one process of a container, as containerd sees it.
type process struct {
	cid, eid string
	stdio    stdioPaths
	spec     *specs.Process // an exec's
	pipes    *pipes
	started  bool
	// startMu is held by Start until the process's start is announced:
	// the relay takes it before it reports the exit.
	startMu sync.Mutex

	// exited closes once the exit is recorded and announced.
	exited   chan struct{}
	exitCode uint32
	exitedAt time.Time
}

func newProcess(cid, eid string, stdio stdioPaths) *process {
	return &process{cid: cid, eid: eid, stdio: stdio, exited: make(chan struct{})}
}

func (p *process) hasExited() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// NewService returns the task service of the pod o.ID; the VM boots at the
// first Create, the pod's sandbox container's.
func NewService(o Options) *Service {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &Service{o: o, dir: o.Layout.PodDir(o.Namespace, o.ID), containers: map[string]*container{},
		dead: make(chan struct{}), state: podState{ID: o.ID, Namespace: o.Namespace}}
}

var _ taskapi.TaskService = (*Service)(nil)

// Errors as containerd reads them (it maps gRPC codes to its errdefs).
func errNotFound(format string, a ...any) error {
	return status.Errorf(codes.NotFound, format, a...)
}

func errPrecondition(format string, a ...any) error {
	return status.Errorf(codes.FailedPrecondition, format, a...)
}

// grpcError keeps the code of an agent error and says which operation
// failed; library sentinels become their containerd codes.
func grpcError(op, id string, err error) error {
	if err == nil {
		return nil
	}
	msg := fmt.Sprintf("%s %s: %v", op, id, err)
	switch {
	case errors.Is(err, pod.ErrNotRunning), errors.Is(err, pod.ErrNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg)
	}
	if s, ok := status.FromError(err); ok && s.Code() != codes.Unknown {
		return status.Error(s.Code(), msg)
	}
	return status.Error(codes.Unknown, msg)
}

// taskPID is the PID containerd knows every task of the pod by: its QEMU's.
// A pod's app containers name the sandbox's namespaces by it
// (/proc/PID/ns/...), which the shim turns into the sandbox container's.
func (s *Service) taskPID() uint32 {
	if s.sb == nil {
		return 0
	}
	return uint32(s.sb.VM().PID())
}

func (s *Service) lookup(id, eid string) (*container, *process, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.containers[id]
	if !ok {
		return nil, nil, errNotFound("container %s does not exist", id)
	}
	if eid == "" {
		return c, c.init, nil
	}
	p, ok := c.execs[eid]
	if !ok {
		return nil, nil, errNotFound("process %s of container %s does not exist", eid, id)
	}
	return c, p, nil
}

// Create boots the pod's VM for its sandbox container, or creates an app
// container in it: the snapshot mounted on the bundle's rootfs, the
// container created and waiting in the guest, its streams relayed.
func (s *Service) Create(ctx context.Context, req *taskapi.CreateTaskRequest) (_ *taskapi.CreateTaskResponse, err error) {
	if req.Checkpoint != "" || req.ParentCheckpoint != "" {
		return nil, status.Error(codes.Unimplemented, "create from a checkpoint: hull cannot checkpoint or restore a container in a VM")
	}
	s.startMu.Lock()
	defer s.startMu.Unlock()
	s.mu.Lock()
	_, exists := s.containers[req.ID]
	s.mu.Unlock()
	if exists {
		return nil, status.Errorf(codes.AlreadyExists, "container %s already exists", req.ID)
	}
	spec, _, err := pod.ReadSpec(filepath.Join(req.Bundle, "config.json"))
	if err != nil {
		return nil, grpcError("create container", req.ID, err)
	}
	if req.Terminal != spec.Process.Terminal {
		return nil, status.Errorf(codes.InvalidArgument, "create container %s: the task asks for terminal=%v, its spec for %v", req.ID, req.Terminal, spec.Process.Terminal)
	}
	sid, owner := pod.SandboxOf(req.ID, spec.Annotations)
	if sid != s.o.ID {
		return nil, status.Errorf(codes.InvalidArgument, "create container %s: it belongs to pod %s, this shim serves %s", req.ID, sid, s.o.ID)
	}
	c := &container{id: req.ID, bundle: req.Bundle, spec: spec, execs: map[string]*process{}, status: task.Status_CREATED}
	var cleanups []func()
	defer func() {
		if err != nil {
			for i := len(cleanups) - 1; i >= 0; i-- {
				cleanups[i]()
			}
			err = grpcError("create container", req.ID, err)
		}
	}()
	if owner {
		if s.sb != nil {
			return nil, fmt.Errorf("pod %s already has its sandbox", s.o.ID)
		}
		if err := s.startSandbox(ctx, req, spec); err != nil {
			return nil, err
		}
		cleanups = append(cleanups, s.stopSandbox)
	} else if s.sb == nil {
		return nil, fmt.Errorf("pod %s: its sandbox is not running", s.o.ID)
	} else if err := s.joinSandbox(spec); err != nil {
		return nil, err
	}
	rootfs := pod.InBundle(req.Bundle, spec.Root.Path)
	mounted, err := mountRootfs(req.Rootfs, rootfs)
	if err != nil {
		return nil, err
	}
	if mounted {
		c.rootfs = rootfs
		cleanups = append(cleanups, func() { _ = unmountRootfs(rootfs) })
	}
	c.init = newProcess(req.ID, "", stdioPaths{req.Stdin, req.Stdout, req.Stderr, req.Terminal})
	if c.init.pipes, err = openStdio(ctx, c.init.stdio); err != nil {
		return nil, err
	}
	cleanups = append(cleanups, c.init.pipes.Close)
	if err := s.guest.CreateContainer(ctx, req.ID, req.Bundle, spec, req.Stdin != ""); err != nil {
		return nil, err
	}
	c.record = pod.Record{ID: req.ID, Sandbox: s.o.ID, Status: pod.Created, Bundle: req.Bundle, Created: time.Now().UTC(),
		PID: int(s.taskPID()), Frontend: Frontend, Namespace: s.o.Namespace, Owner: "root", Annotations: spec.Annotations}
	if err := pod.WriteRecord(pod.RecordDir(s.dir), c.record); err != nil {
		_ = s.guest.RemoveContainer(context.WithoutCancel(ctx), req.ID, true)
		return nil, err
	}
	s.mu.Lock()
	s.containers[req.ID] = c
	s.mu.Unlock()
	s.o.Publisher.Publish(topicCreate, &eventstypes.TaskCreate{ContainerID: req.ID, Bundle: req.Bundle, Rootfs: req.Rootfs,
		IO: &eventstypes.TaskIO{Stdin: req.Stdin, Stdout: req.Stdout, Stderr: req.Stderr, Terminal: req.Terminal}, Pid: s.taskPID()})
	// The init process's streams are relayed from now: what it writes as
	// it starts is not lost.
	go s.relay(c, c.init)
	return &taskapi.CreateTaskResponse{Pid: s.taskPID()}, nil
}

// startSandbox boots the pod's VM for its sandbox container: its host
// cgroup (which the shim joins, so QEMU starts in it), its network
// namespace (the spec's, or one the shim makes), the VM.
func (s *Service) startSandbox(ctx context.Context, req *taskapi.CreateTaskRequest, spec *specs.Spec) (err error) {
	cfgPath := s.o.ConfigPath
	if p := configPathOption(req.Options); p != "" {
		cfgPath = p
	}
	cfg, err := pod.LoadConfig(cfgPath, s.o.ConfigEnv)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return err
	}
	self, err := pod.RefOf(os.Getpid())
	if err != nil {
		return err
	}
	s.state.Shim = self
	defer func() {
		if err != nil {
			if s.state.CgroupDriver != "" {
				_ = pod.LeaveCgroups()
			}
			_ = cleanupPod(s.dir, s.o.Log)
		}
	}()
	if err := writePodState(s.dir, &s.state); err != nil {
		return err
	}
	vcpus, mem := pod.SizeVM(cfg.Hypervisor, spec)
	if err := s.joinPodCgroup(spec, mem); err != nil {
		return err
	}
	netns, err := s.netns(spec)
	if err != nil {
		return err
	}
	sb, err := pod.StartSandbox(ctx, pod.SandboxOptions{ID: s.o.ID, Dir: filepath.Join(s.dir, vmDir), Config: cfg,
		VCPUs: vcpus, MemoryMiB: mem, NetNS: netns, NewVM: s.o.NewVM, Log: s.o.Log})
	if err != nil {
		return err
	}
	qemu, _ := pod.RefOf(sb.VM().PID()) // one already gone is found by the watch below
	s.state.QEMU = &qemu
	if fsd := sb.Virtiofsd(); fsd != nil {
		ref, _ := pod.RefOf(fsd.PID())
		s.state.Virtiofsd = &ref
	}
	s.mu.Lock()
	s.sb, s.guest = sb, sb.Guest()
	s.mu.Unlock()
	if err := writePodState(s.dir, &s.state); err != nil {
		_ = sb.Stop(context.Background())
		return err
	}
	s.o.Log.Info("sandbox ready", "pod", s.o.ID, "accel", sb.Accel.Name, "qemu", sb.VM().PID(), "timings", sb.Timings)
	go s.watch(sb)
	return nil
}

// joinPodCgroup makes the pod's host cgroup, sized for a VM of vmMemMiB,
// and moves the shim into it, so that QEMU starts inside: a cgroupfs
// directory at the spec's cgroupsPath, or a systemd scope (see
// pod.ShimCgroupDriver for which). The pod state names it first, for a
// delete after a crash.
func (s *Service) joinPodCgroup(spec *specs.Spec, vmMemMiB int) error {
	var path string
	if spec.Linux != nil {
		path = spec.Linux.CgroupsPath
	}
	choice := pod.ShimCgroupDriver(path)
	cg, err := pod.NewHostCgroup(choice.Driver, path, s.o.ID)
	if err != nil || cg == nil {
		return err
	}
	s.o.Log.Info("pod cgroup", "pod", s.o.ID, "cgroupsPath", path, "driver", choice.Driver, "why", choice.Why)
	s.state.Cgroup, s.state.CgroupDriver = path, choice.Driver
	if err := writePodState(s.dir, &s.state); err != nil {
		return err
	}
	if err := cg.Create(pod.SandboxResources(spec), vmMemMiB); err != nil {
		return err
	}
	return cg.Add(os.Getpid())
}

// netns is the network namespace the pod's VM takes over: the spec's path
// (the CRI's), or a new one the shim makes for a lone container (ctr run).
func (s *Service) netns(spec *specs.Spec) (string, error) {
	if spec.Linux != nil {
		for _, ns := range spec.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			if ns.Path != "" {
				if pod.IsHostNetNS(ns.Path) {
					return "", pod.ErrHostNetwork
				}
				return ns.Path, nil
			}
			path := filepath.Join(s.dir, netnsFile)
			s.state.NetNS = path
			if err := writePodState(s.dir, &s.state); err != nil {
				return "", err
			}
			if err := pod.CreateNetNS(path); err != nil {
				return "", err
			}
			return path, nil
		}
	}
	return "", pod.ErrHostNetwork
}

// joinSandbox points an app container's namespace paths, which name the
// sandbox task's PID (/proc/PID/ns/TYPE), at the sandbox container's
// namespaces in the guest. The network's path goes: every container of the
// pod uses its VM's network.
func (s *Service) joinSandbox(spec *specs.Spec) error {
	if spec.Linux == nil {
		return nil
	}
	prefix := "/proc/" + strconv.Itoa(int(s.taskPID())) + "/ns/"
	for i, n := range spec.Linux.Namespaces {
		switch {
		case n.Path == "":
		case n.Type == specs.NetworkNamespace:
			spec.Linux.Namespaces[i].Path = ""
		case strings.HasPrefix(n.Path, prefix):
			spec.Linux.Namespaces[i].Path = agentproto.ContainerNSPrefix + s.o.ID
		default:
			return fmt.Errorf("%s namespace path %s: only the pod's own namespaces can be joined in its VM", n.Type, n.Path)
		}
	}
	return nil
}

// watch marks the pod dead when its VM, share or agent connection goes.
// Every relay then fails, and each process gets its TaskExit.
func (s *Service) watch(sb *pod.Sandbox) {
	why := <-sb.Ended()
	s.mu.Lock()
	stopped := s.stopped
	s.mu.Unlock()
	if !stopped {
		s.o.Log.Error("sandbox died", "pod", s.o.ID, "why", why, "err", sb.WithConsole(errors.New(why)))
	}
	s.deadOnce.Do(func() { close(s.dead) })
}

// relay carries a process's streams until it ends, then records its exit
// and tells containerd: after the start (a process can end before Start
// has announced it), an OOM kill first (the CRI expects it before the exit
// it caused), and before Wait and Delete return (a TaskDelete after the
// TaskExit).
func (s *Service) relay(c *container, p *process) {
	exit, err := pod.RelayExit(context.Background(), s.guest.Agent, p.cid, p.eid, p.pipes.Stdio)
	p.pipes.Close()
	code := uint32(exit.Status)
	if err != nil {
		// The VM is gone: the process went with it.
		s.o.Log.Warn("process lost", "container", p.cid, "exec", p.eid, "err", err)
		code = 255
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	s.mu.Lock()
	p.exitCode, p.exitedAt = code, time.Now()
	if p.eid == "" {
		c.status = task.Status_STOPPED
		c.record.Status = pod.Stopped
		_ = pod.WriteRecord(pod.RecordDir(s.dir), c.record)
	}
	s.mu.Unlock()
	if exit.OOMKilled {
		s.o.Publisher.Publish(topicOOM, &eventstypes.TaskOOM{ContainerID: p.cid})
	}
	id := p.eid
	if id == "" {
		id = p.cid
	}
	s.o.Publisher.Publish(topicExit, &eventstypes.TaskExit{ContainerID: p.cid, ID: id, Pid: s.taskPID(),
		ExitStatus: code, ExitedAt: timestamppb.New(p.exitedAt)})
	close(p.exited)
}

// Start starts a created container's init process, or an added exec.
func (s *Service) Start(ctx context.Context, req *taskapi.StartRequest) (*taskapi.StartResponse, error) {
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	p.startMu.Lock()
	defer p.startMu.Unlock()
	if req.ExecID == "" {
		s.mu.Lock()
		st := c.status
		s.mu.Unlock()
		if st != task.Status_CREATED {
			return nil, errPrecondition("start container %s: it is %s, not created", req.ID, strings.ToLower(st.String()))
		}
		if err := s.guest.StartContainer(ctx, req.ID); err != nil {
			return nil, grpcError("start container", req.ID, err)
		}
		s.mu.Lock()
		if c.status == task.Status_CREATED {
			c.status = task.Status_RUNNING
			c.record.Status = pod.Running
			_ = pod.WriteRecord(pod.RecordDir(s.dir), c.record)
		}
		c.init.started = true
		s.mu.Unlock()
		s.o.Publisher.Publish(topicStart, &eventstypes.TaskStart{ContainerID: req.ID, Pid: s.taskPID()})
		return &taskapi.StartResponse{Pid: s.taskPID()}, nil
	}
	s.mu.Lock()
	started := p.started
	p.started = true
	s.mu.Unlock()
	if started {
		return nil, errPrecondition("start exec %s of %s: already started", req.ExecID, req.ID)
	}
	err = func() error {
		pipes, err := openStdio(ctx, p.stdio)
		if err != nil {
			return err
		}
		if err := s.guest.ExecProcess(ctx, req.ID, req.ExecID, p.spec, p.stdio.stdin != ""); err != nil {
			pipes.Close()
			return err
		}
		s.mu.Lock()
		p.pipes = pipes
		s.mu.Unlock()
		return nil
	}()
	if err != nil {
		s.mu.Lock()
		p.started = false
		s.mu.Unlock()
		return nil, grpcError("exec in container", req.ID, err)
	}
	go s.relay(c, p)
	s.o.Publisher.Publish(topicExecStarted, &eventstypes.TaskExecStarted{ContainerID: req.ID, ExecID: req.ExecID, Pid: s.taskPID()})
	return &taskapi.StartResponse{Pid: s.taskPID()}, nil
}

// Exec adds a process to a running container; Start starts it.
func (s *Service) Exec(ctx context.Context, req *taskapi.ExecProcessRequest) (*emptypb.Empty, error) {
	c, _, err := s.lookup(req.ID, "")
	if err != nil {
		return nil, err
	}
	if req.Spec == nil {
		return nil, status.Errorf(codes.InvalidArgument, "exec %s in %s: no process spec", req.ExecID, req.ID)
	}
	var ps specs.Process
	if err := json.Unmarshal(req.Spec.Value, &ps); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "exec %s in %s: process spec: %v", req.ExecID, req.ID, err)
	}
	if ps.Terminal != req.Terminal {
		ps.Terminal = req.Terminal
	}
	s.mu.Lock()
	if c.status != task.Status_RUNNING {
		s.mu.Unlock()
		return nil, errPrecondition("exec %s in %s: container is %s", req.ExecID, req.ID, strings.ToLower(c.status.String()))
	}
	if _, ok := c.execs[req.ExecID]; ok {
		s.mu.Unlock()
		return nil, status.Errorf(codes.AlreadyExists, "exec %s in %s already exists", req.ExecID, req.ID)
	}
	p := newProcess(req.ID, req.ExecID, stdioPaths{req.Stdin, req.Stdout, req.Stderr, req.Terminal})
	p.spec = &ps
	c.execs[req.ExecID] = p
	// Sent without the lock: a publisher waiting on an absent containerd
	// must not hold up every other request.
	s.mu.Unlock()
	s.o.Publisher.Publish(topicExecAdded, &eventstypes.TaskExecAdded{ContainerID: req.ID, ExecID: req.ExecID})
	return &emptypb.Empty{}, nil
}

// deleteWait bounds how long Delete waits for a killed created container's
// relay to see it end.
const deleteWait = 10 * time.Second

// Delete removes a stopped (or never started) process. The sandbox
// container's delete stops the pod's VM.
func (s *Service) Delete(ctx context.Context, req *taskapi.DeleteRequest) (*taskapi.DeleteResponse, error) {
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	if req.ExecID != "" {
		s.mu.Lock()
		defer s.mu.Unlock()
		if p.started && !p.hasExited() {
			return nil, errPrecondition("delete exec %s of %s: it is running", req.ExecID, req.ID)
		}
		delete(c.execs, req.ExecID)
		return &taskapi.DeleteResponse{Pid: s.taskPID(), ExitStatus: p.exitCode, ExitedAt: timestamppb.New(p.exitedAt)}, nil
	}
	s.mu.Lock()
	st := c.status
	s.mu.Unlock()
	vmGone := s.isStopped()
	select {
	case <-s.dead:
		vmGone = true
	default:
	}
	if (st == task.Status_RUNNING || st == task.Status_PAUSED) && !vmGone {
		return nil, errPrecondition("delete container %s: it is %s: kill it first", req.ID, strings.ToLower(st.String()))
	}
	switch {
	case s.isStopped():
		// The pod's sandbox was deleted first: the share went with it.
	case vmGone:
		// The VM died by itself; the host's side of the share is still up.
		if err := s.sb.Share().RemoveContainer(req.ID); err != nil {
			return nil, grpcError("delete container", req.ID, err)
		}
	default:
		// A created container's process is killed here; its relay then
		// ends and reports the exit.
		if err := s.guest.RemoveContainer(ctx, req.ID, true); err != nil {
			return nil, grpcError("delete container", req.ID, err)
		}
	}
	select {
	case <-c.init.exited:
	case <-time.After(deleteWait):
		return nil, status.Errorf(codes.DeadlineExceeded, "delete container %s: its process did not end", req.ID)
	}
	if c.rootfs != "" {
		if err := unmountRootfs(c.rootfs); err != nil {
			return nil, grpcError("delete container", req.ID, err)
		}
	}
	if err := pod.RemoveRecord(pod.RecordDir(s.dir), req.ID); err != nil {
		return nil, grpcError("delete container", req.ID, err)
	}
	s.mu.Lock()
	delete(s.containers, req.ID)
	s.mu.Unlock()
	resp := &taskapi.DeleteResponse{Pid: s.taskPID(), ExitStatus: c.init.exitCode, ExitedAt: timestamppb.New(c.init.exitedAt)}
	s.o.Publisher.Publish(topicDelete, &eventstypes.TaskDelete{ContainerID: req.ID, ID: req.ID, Pid: resp.Pid,
		ExitStatus: resp.ExitStatus, ExitedAt: resp.ExitedAt})
	if req.ID == s.o.ID {
		// The pod's sandbox is gone: so is its VM, with what still ran.
		s.stopSandbox()
	}
	return resp, nil
}

// stopSandbox stops the VM and undoes the pod's host side, leaving the
// shim serving (containerd still asks for state, then Shutdown).
func (s *Service) stopSandbox() {
	s.mu.Lock()
	sb := s.sb
	joined := s.state.CgroupDriver != ""
	already := s.stopped
	s.stopped = true
	s.mu.Unlock()
	if already {
		return
	}
	if sb != nil {
		if err := sb.Stop(context.Background()); err != nil {
			s.o.Log.Error("stop sandbox", "pod", s.o.ID, "err", err)
		}
	}
	if joined {
		if err := pod.LeaveCgroups(); err != nil {
			s.o.Log.Warn("leave pod cgroup", "pod", s.o.ID, "err", err)
		}
	}
	if err := cleanupPod(s.dir, s.o.Log); err != nil {
		s.o.Log.Error("clean up pod", "pod", s.o.ID, "err", err)
	}
}

func (s *Service) isStopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped
}

// Kill signals a process, or with all every process of the container.
func (s *Service) Kill(ctx context.Context, req *taskapi.KillRequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	started := p.started
	s.mu.Unlock()
	if req.ExecID != "" && !started {
		return nil, errPrecondition("kill exec %s of %s: it has not started", req.ExecID, req.ID)
	}
	if p.hasExited() {
		return nil, errNotFound("kill %s: process already finished", req.ID)
	}
	if err := s.guest.SignalProcess(ctx, req.ID, req.ExecID, syscall.Signal(req.Signal), req.All); err != nil {
		if errors.Is(err, pod.ErrNotRunning) {
			return nil, errNotFound("kill %s: process already finished", req.ID)
		}
		return nil, grpcError("kill", req.ID, err)
	}
	return &emptypb.Empty{}, nil
}

// Wait returns once the process has exited.
func (s *Service) Wait(ctx context.Context, req *taskapi.WaitRequest) (*taskapi.WaitResponse, error) {
	_, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
		return &taskapi.WaitResponse{ExitStatus: p.exitCode, ExitedAt: timestamppb.New(p.exitedAt)}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// State reports a process's status and streams.
func (s *Service) State(ctx context.Context, req *taskapi.StateRequest) (*taskapi.StateResponse, error) {
	c, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := c.status
	if req.ExecID != "" {
		switch {
		case p.hasExited():
			st = task.Status_STOPPED
		case p.started:
			st = task.Status_RUNNING
		default:
			st = task.Status_CREATED
		}
	}
	resp := &taskapi.StateResponse{ID: req.ID, ExecID: req.ExecID, Bundle: c.bundle, Pid: s.taskPID(), Status: st,
		Stdin: p.stdio.stdin, Stdout: p.stdio.stdout, Stderr: p.stdio.stderr, Terminal: p.stdio.terminal}
	if p.hasExited() {
		resp.ExitStatus, resp.ExitedAt = p.exitCode, timestamppb.New(p.exitedAt)
	}
	return resp, nil
}

// Pids lists the container's processes (guest PIDs).
func (s *Service) Pids(ctx context.Context, req *taskapi.PidsRequest) (*taskapi.PidsResponse, error) {
	if _, _, err := s.lookup(req.ID, ""); err != nil {
		return nil, err
	}
	pids, err := s.guest.ListProcesses(ctx, req.ID)
	if err != nil {
		return nil, grpcError("list processes of", req.ID, err)
	}
	resp := &taskapi.PidsResponse{}
	for _, pid := range pids {
		resp.Processes = append(resp.Processes, &task.ProcessInfo{Pid: uint32(pid)})
	}
	return resp, nil
}

// Pause freezes the container in the guest.
func (s *Service) Pause(ctx context.Context, req *taskapi.PauseRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, req.ID, true)
}

// Resume thaws it.
func (s *Service) Resume(ctx context.Context, req *taskapi.ResumeRequest) (*emptypb.Empty, error) {
	return s.freeze(ctx, req.ID, false)
}

func (s *Service) freeze(ctx context.Context, id string, pause bool) (*emptypb.Empty, error) {
	c, _, err := s.lookup(id, "")
	if err != nil {
		return nil, err
	}
	from, to, op, rec := task.Status_RUNNING, task.Status_PAUSED, "pause", pod.Paused
	if !pause {
		from, to, op, rec = task.Status_PAUSED, task.Status_RUNNING, "resume", pod.Running
	}
	s.mu.Lock()
	st := c.status
	s.mu.Unlock()
	if st != from {
		return nil, errPrecondition("%s container %s: it is %s", op, id, strings.ToLower(st.String()))
	}
	if pause {
		err = s.guest.PauseContainer(ctx, id)
	} else {
		err = s.guest.ResumeContainer(ctx, id)
	}
	if err != nil {
		return nil, grpcError(op+" container", id, err)
	}
	s.mu.Lock()
	if c.status == from {
		c.status = to
		c.record.Status = rec
		_ = pod.WriteRecord(pod.RecordDir(s.dir), c.record)
	}
	s.mu.Unlock()
	if pause {
		s.o.Publisher.Publish(topicPaused, &eventstypes.TaskPaused{ContainerID: id})
	} else {
		s.o.Publisher.Publish(topicResumed, &eventstypes.TaskResumed{ContainerID: id})
	}
	return &emptypb.Empty{}, nil
}

// Checkpoint is not possible for a container in a VM.
func (s *Service) Checkpoint(ctx context.Context, req *taskapi.CheckpointTaskRequest) (*emptypb.Empty, error) {
	return nil, status.Errorf(codes.Unimplemented, "checkpoint %s: hull cannot checkpoint a container: it runs in a VM, and its processes are the guest kernel's", req.ID)
}

// ResizePty sets the terminal size of a process.
func (s *Service) ResizePty(ctx context.Context, req *taskapi.ResizePtyRequest) (*emptypb.Empty, error) {
	if _, _, err := s.lookup(req.ID, req.ExecID); err != nil {
		return nil, err
	}
	if err := s.guest.ResizeTty(ctx, req.ID, req.ExecID, uint16(req.Height), uint16(req.Width)); err != nil {
		return nil, grpcError("resize terminal of", req.ID, err)
	}
	return &emptypb.Empty{}, nil
}

// CloseIO ends a process's input once containerd's client closed it.
func (s *Service) CloseIO(ctx context.Context, req *taskapi.CloseIORequest) (*emptypb.Empty, error) {
	_, p, err := s.lookup(req.ID, req.ExecID)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	pipes := p.pipes
	s.mu.Unlock()
	if req.Stdin && pipes != nil && pipes.stdin != nil {
		pipes.stdin.CloseInput()
	}
	return &emptypb.Empty{}, nil
}

// Update changes the container's resource limits in the guest.
func (s *Service) Update(ctx context.Context, req *taskapi.UpdateTaskRequest) (*emptypb.Empty, error) {
	if _, _, err := s.lookup(req.ID, ""); err != nil {
		return nil, err
	}
	if req.Resources == nil {
		return &emptypb.Empty{}, nil
	}
	var res specs.LinuxResources
	if err := json.Unmarshal(req.Resources.Value, &res); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "update %s: resources: %v", req.ID, err)
	}
	if err := s.guest.UpdateContainer(ctx, req.ID, &res); err != nil {
		return nil, grpcError("update container", req.ID, err)
	}
	return &emptypb.Empty{}, nil
}

// Stats reads the container's usage in the guest, as cgroup v1 metrics.
func (s *Service) Stats(ctx context.Context, req *taskapi.StatsRequest) (*taskapi.StatsResponse, error) {
	if _, _, err := s.lookup(req.ID, ""); err != nil {
		return nil, err
	}
	st, err := s.guest.StatsContainer(ctx, req.ID)
	if err != nil {
		return nil, grpcError("stats of", req.ID, err)
	}
	m, err := metrics(st)
	if err != nil {
		return nil, grpcError("stats of", req.ID, err)
	}
	return &taskapi.StatsResponse{Stats: m}, nil
}

// Connect tells containerd the shim's PID and the task's.
func (s *Service) Connect(ctx context.Context, req *taskapi.ConnectRequest) (*taskapi.ConnectResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &taskapi.ConnectResponse{ShimPid: uint32(os.Getpid()), TaskPid: s.taskPID()}, nil
}

// Shutdown ends the shim once it runs no container (containerd sends it
// after each task's delete; a pod's shim lives until its last one).
func (s *Service) Shutdown(ctx context.Context, req *taskapi.ShutdownRequest) (*emptypb.Empty, error) {
	s.mu.Lock()
	n := len(s.containers)
	if (n > 0 && !req.Now) || s.exiting {
		s.mu.Unlock()
		return &emptypb.Empty{}, nil
	}
	s.exiting = true
	s.mu.Unlock()
	s.stopSandbox()
	if s.o.Exit != nil {
		s.o.Exit()
	}
	return &emptypb.Empty{}, nil
}

// Stop ends the pod as Shutdown does, for a shim told to stop by a signal.
func (s *Service) Stop() { s.stopSandbox() }
