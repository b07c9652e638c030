package shim

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/hypervisor"
	"github.com/hull-runtime/hull/pod"
)

// fakeGuest is the agent of a fakeVM, speaking the agent protocol on the
// VM's agent socket as the guest's would: it keeps containers whose
// processes run until a signal or the test (exit) ends them. A process's
// output is its arguments, as echo's. Calls the shim does not make panic
// (the nil AgentService), as with ocicli's fakeAgent.
type fakeGuest struct {
	agentproto.AgentService

	mu    sync.Mutex
	specs map[string]*specs.Spec // the guest specs of the containers
	procs map[procKey]*fakeProc
	calls []string // what the shim asked, in order
	vm    *fakeVM
	// onStart, when set, runs as a container's init starts, before the
	// agent answers.
	onStart func(cid string)
}

type procKey struct{ cid, eid string }

type fakeProc struct {
	output  string
	started chan struct{}
	waited  chan struct{} // closes at the first WaitProcess
	exited  chan struct{}
	status  int32
	oom     bool
	read    bool // its output was read
}

func newFakeGuest() *fakeGuest {
	return &fakeGuest{specs: map[string]*specs.Spec{}, procs: map[procKey]*fakeProc{}}
}

func newFakeProc(args []string) *fakeProc {
	out := ""
	if len(args) > 1 {
		out = strings.Join(args[1:], " ") + "\n"
	}
	return &fakeProc{output: out, started: make(chan struct{}), waited: make(chan struct{}), exited: make(chan struct{})}
}

func (g *fakeGuest) call(name string) {
	g.calls = append(g.calls, name)
}

// called reports whether the shim asked for call.
func (g *fakeGuest) called(call string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Contains(g.calls, call)
}

func (g *fakeGuest) proc(cid, eid string) (*fakeProc, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	p, ok := g.procs[procKey{cid, eid}]
	if !ok {
		return nil, status.Errorf(codes.NotFound, "process %s/%s not found", cid, eid)
	}
	return p, nil
}

// exit ends a process as the guest would see it end.
func (g *fakeGuest) exit(cid, eid string, code int32, oom bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exitLocked(g.procs[procKey{cid, eid}], code, oom)
}

func (g *fakeGuest) exitLocked(p *fakeProc, code int32, oom bool) {
	select {
	case <-p.exited:
	default:
		p.status, p.oom = code, oom
		close(p.exited)
	}
}

// waiting returns once the shim waits for the process: the agent forgets
// a removed container's processes, and their exit with them.
func (g *fakeGuest) waiting(t *testing.T, cid, eid string) {
	t.Helper()
	p, err := g.proc(cid, eid)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.waited:
	case <-time.After(10 * time.Second):
		t.Fatalf("the shim never waited for %s/%s", cid, eid)
	}
}

// spec is the guest spec container cid was created with.
func (g *fakeGuest) spec(cid string) *specs.Spec {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.specs[cid]
}

func (g *fakeGuest) Health(context.Context, *agentproto.HealthRequest) (*agentproto.HealthResponse, error) {
	return &agentproto.HealthResponse{Version: "fake"}, nil
}

func (g *fakeGuest) CreateContainer(_ context.Context, req *agentproto.CreateContainerRequest) (*agentproto.Empty, error) {
	var s specs.Spec
	if err := json.Unmarshal(req.Spec, &s); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("create " + req.ContainerId)
	g.specs[req.ContainerId] = &s
	g.procs[procKey{req.ContainerId, ""}] = newFakeProc(s.Process.Args)
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) StartContainer(_ context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	p, err := g.proc(req.ContainerId, "")
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	g.call("start " + req.ContainerId)
	close(p.started)
	onStart := g.onStart
	g.mu.Unlock()
	if onStart != nil {
		onStart(req.ContainerId)
	}
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) RemoveContainer(_ context.Context, req *agentproto.RemoveContainerRequest) (*agentproto.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("remove " + req.ContainerId)
	if p, ok := g.procs[procKey{req.ContainerId, ""}]; ok {
		g.exitLocked(p, 128+int32(syscall.SIGKILL), false)
	}
	delete(g.procs, procKey{req.ContainerId, ""})
	delete(g.specs, req.ContainerId)
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) PauseContainer(_ context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("pause " + req.ContainerId)
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) ResumeContainer(_ context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("resume " + req.ContainerId)
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) ExecProcess(_ context.Context, req *agentproto.ExecProcessRequest) (*agentproto.Empty, error) {
	var ps specs.Process
	if err := json.Unmarshal(req.Process, &ps); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("exec " + req.ContainerId + " " + req.ExecId)
	p := newFakeProc(ps.Args)
	close(p.started)
	g.procs[procKey{req.ContainerId, req.ExecId}] = p
	return &agentproto.Empty{}, nil
}

// SignalProcess ends the process with any signal but SIGCONT; one that
// has ended is not found, as the agent says.
func (g *fakeGuest) SignalProcess(_ context.Context, req *agentproto.SignalProcessRequest) (*agentproto.Empty, error) {
	p, err := g.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-p.exited:
		return nil, status.Errorf(codes.NotFound, "process %s/%s has exited", req.ContainerId, req.ExecId)
	default:
	}
	if syscall.Signal(req.Signal) != syscall.SIGCONT {
		g.exitLocked(p, 128+int32(req.Signal), false)
	}
	return &agentproto.Empty{}, nil
}

func (g *fakeGuest) WaitProcess(ctx context.Context, req *agentproto.ProcessRequest) (*agentproto.WaitProcessResponse, error) {
	p, err := g.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	g.mu.Lock()
	select {
	case <-p.waited:
	default:
		close(p.waited)
	}
	g.mu.Unlock()
	select {
	case <-p.exited:
		return &agentproto.WaitProcessResponse{Status: p.status, OomKilled: p.oom}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// ReadStdout returns the process's output once it has started, then the end
// of the stream once it has exited.
func (g *fakeGuest) ReadStdout(ctx context.Context, req *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error) {
	p, err := g.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.started:
	case <-p.exited:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	g.mu.Lock()
	read := p.read
	p.read = true
	g.mu.Unlock()
	if !read && p.output != "" {
		return &agentproto.ReadStreamResponse{Data: []byte(p.output)}, nil
	}
	return g.ReadStderr(ctx, req)
}

// ReadStderr: nothing until the end.
func (g *fakeGuest) ReadStderr(ctx context.Context, req *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error) {
	p, err := g.proc(req.ContainerId, req.ExecId)
	if err != nil {
		return nil, err
	}
	select {
	case <-p.exited:
		return &agentproto.ReadStreamResponse{Eof: true}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (g *fakeGuest) CloseProcess(_ context.Context, req *agentproto.ProcessRequest) (*agentproto.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.procs, procKey{req.ContainerId, req.ExecId})
	return &agentproto.Empty{}, nil
}

// UpdateInterfaces takes the network the VM took over (none: the test's
// namespace is empty).
func (g *fakeGuest) UpdateInterfaces(_ context.Context, req *agentproto.UpdateInterfacesRequest) (*agentproto.Empty, error) {
	if len(req.Interfaces) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "interfaces %v in an empty network namespace", req.Interfaces)
	}
	return &agentproto.Empty{}, nil
}

// DestroySandbox powers the VM off once it has answered.
func (g *fakeGuest) DestroySandbox(context.Context, *agentproto.DestroySandboxRequest) (*agentproto.Empty, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.call("destroy")
	go g.vm.powerOff()
	return &agentproto.Empty{}, nil
}

// fakeVM is a pod.VM without a guest kernel: "booting" serves its
// fakeGuest on the agent socket QEMU's virtio-serial port would be. Its
// PID is the test's own, which the shim's clean-up never kills.
type fakeVM struct {
	guest *fakeGuest
	sock  string
	srv   *ttrpc.Server
	done  chan struct{}
	once  sync.Once
}

// newVM is the guest's pod.VMFactory.
func (g *fakeGuest) newVM(cfg hypervisor.Config, _ *slog.Logger, _ hypervisor.Timeouts) pod.VM {
	vm := &fakeVM{guest: g, sock: cfg.Agent.SocketPath, done: make(chan struct{})}
	g.mu.Lock()
	g.vm = vm
	g.mu.Unlock()
	return vm
}

func (v *fakeVM) Start(context.Context) error {
	srv, err := ttrpc.NewServer()
	if err != nil {
		return err
	}
	agentproto.RegisterAgentService(srv, v.guest)
	l, err := net.Listen("unix", v.sock)
	if err != nil {
		return err
	}
	v.srv = srv
	go func() { _ = srv.Serve(context.Background(), l) }()
	return nil
}

func (v *fakeVM) WaitAgentPort(context.Context) error { return nil }

func (v *fakeVM) Restore(context.Context, string) error {
	return errors.New("the fake VM cannot be restored")
}

func (v *fakeVM) Stop(context.Context) error {
	v.powerOff()
	return nil
}

// powerOff ends the guest: the agent's connection goes, and with it every
// wait for a process.
func (v *fakeVM) powerOff() {
	v.once.Do(func() {
		if v.srv != nil {
			v.srv.Close()
		}
		close(v.done)
	})
}

func (v *fakeVM) Done() <-chan struct{} { return v.done }
func (v *fakeVM) PID() int              { return os.Getpid() }

// event is one event the shim published.
type event struct {
	topic string
	msg   proto.Message
}

// fakePublisher hands the shim's events to the test, in order.
type fakePublisher struct {
	events chan event
	// slow, when set before the first event, is how long each event of a
	// topic takes to publish, as with a busy containerd.
	slow map[string]time.Duration
}

func newFakePublisher() *fakePublisher { return &fakePublisher{events: make(chan event, 100)} }

func (f *fakePublisher) Publish(topic string, msg proto.Message) {
	time.Sleep(f.slow[topic])
	f.events <- event{topic, msg}
}

func (f *fakePublisher) Close() {}

// next is the next event; the relays publish exits on their own time.
func (f *fakePublisher) next(t *testing.T) event {
	t.Helper()
	select {
	case e := <-f.events:
		return e
	case <-time.After(10 * time.Second):
		t.Fatal("no event published")
		return event{}
	}
}

// expect checks the next events' topics and returns the events.
func (f *fakePublisher) expect(t *testing.T, topics ...string) []event {
	t.Helper()
	var got []event
	for _, want := range topics {
		e := f.next(t)
		got = append(got, e)
		if e.topic != want {
			t.Fatalf("event %d: %s (%v), want %s", len(got), e.topic, e.msg, want)
		}
	}
	return got
}

// none checks that nothing more was published.
func (f *fakePublisher) none(t *testing.T) {
	t.Helper()
	select {
	case e := <-f.events:
		t.Fatalf("unexpected event %s (%v)", e.topic, e.msg)
	default:
	}
}
