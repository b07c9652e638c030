package ocicli

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/containerd/ttrpc"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/pod"
)

// The test binary doubles as a fake proxy: runtimes made by fakeRuntime
// re-execute it with fakeProxyEnv set, and TestMain runs the fake instead of
// the tests.
const fakeProxyEnv = "HULL_FAKE_PROXY"

func TestMain(m *testing.M) {
	if os.Getenv(fakeProxyEnv) != "" {
		os.Exit(fakeProxy())
	}
	os.Exit(m.Run())
}

// fakeProxy waits for its gate (fd 3) as a proxy does, then holds on until
// its stdin closes, so that it ends with the test even if nobody kills it.
func fakeProxy() int {
	gate := os.NewFile(3, "gate")
	b := make([]byte, 1)
	if n, _ := gate.Read(b); n != 1 {
		return ExitSandboxLost
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// fakeAgent is an agent whose calls the test scripts; a call it does not
// script panics (the nil AgentService).
type fakeAgent struct {
	agentproto.AgentService
	exec   func(*agentproto.ExecProcessRequest) error
	start  func(*agentproto.ContainerRequest) error
	mu     sync.Mutex
	signal []*agentproto.SignalProcessRequest
}

func (f *fakeAgent) ExecProcess(_ context.Context, req *agentproto.ExecProcessRequest) (*agentproto.Empty, error) {
	return &agentproto.Empty{}, f.exec(req)
}

func (f *fakeAgent) StartContainer(_ context.Context, req *agentproto.ContainerRequest) (*agentproto.Empty, error) {
	return &agentproto.Empty{}, f.start(req)
}

func (f *fakeAgent) SignalProcess(_ context.Context, req *agentproto.SignalProcessRequest) (*agentproto.Empty, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signal = append(f.signal, req)
	return &agentproto.Empty{}, nil
}

func (f *fakeAgent) WaitProcess(context.Context, *agentproto.ProcessRequest) (*agentproto.WaitProcessResponse, error) {
	return &agentproto.WaitProcessResponse{Status: 137}, nil
}

func (f *fakeAgent) CloseProcess(context.Context, *agentproto.ProcessRequest) (*agentproto.Empty, error) {
	return &agentproto.Empty{}, nil
}

func (f *fakeAgent) signals() []*agentproto.SignalProcessRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*agentproto.SignalProcessRequest(nil), f.signal...)
}

// fakeRuntime is a Runtime over a fresh store whose proxies are fakeProxy.
func fakeRuntime(t *testing.T) *Runtime {
	t.Helper()
	t.Setenv(fakeProxyEnv, "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to 108 bytes; t.TempDir can be longer.
	root, err := os.MkdirTemp("", "hull-rt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(root) })
	return &Runtime{Store: &Store{Root: root}, Self: exe, Log: slog.New(slog.DiscardHandler)}
}

// serveMonitor serves agent as the monitor of sandbox sid.
func serveMonitor(t *testing.T, r *Runtime, sid string, agent agentproto.AgentService) {
	t.Helper()
	dir := r.Store.SandboxDir(sid)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentproto.RegisterAgentService(srv, agent)
	l, err := net.Listen("unix", filepath.Join(dir, monitorSocket))
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	t.Cleanup(func() { srv.Close() })
}

// saveContainer stores container id, alone in its sandbox, with status st
// and the config create saw; the test process stands for its proxy.
func saveContainer(t *testing.T, r *Runtime, id string, status pod.Status) *ContainerState {
	t.Helper()
	self, err := pod.RefOf(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Store.Reserve(id); err != nil {
		t.Fatal(err)
	}
	spec := `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`
	if err := r.Store.SaveSpec(id, []byte(spec)); err != nil {
		t.Fatal(err)
	}
	st := &ContainerState{ID: id, Bundle: t.TempDir(), SandboxID: id, Status: status, Proxy: self}
	if err := r.Store.Save(st); err != nil {
		t.Fatal(err)
	}
	return st
}
