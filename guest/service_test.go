package guest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

func TestCloseProcess(t *testing.T) {
	svc := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir()})
	p := &process{pid: 42, exited: make(chan struct{})}
	svc.containers["c1"] = &container{id: "c1", init: &process{exited: make(chan struct{})}, execs: map[string]*process{"e1": p}}
	ctx := context.Background()

	if _, err := svc.CloseProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("closing the init process: %v", err)
	}
	if _, err := svc.CloseProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1", ExecId: "e1"}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("closing a running exec: %v", err)
	}
	close(p.exited)
	if _, err := svc.CloseProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1", ExecId: "e1"}); err != nil {
		t.Fatalf("closing an exited exec: %v", err)
	}
	if _, err := svc.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1", ExecId: "e1"}); status.Code(err) != codes.NotFound {
		t.Errorf("a closed exec is still known: %v", err)
	}
	if _, err := svc.CloseProcess(ctx, &agentproto.ProcessRequest{ContainerId: "nope", ExecId: "e1"}); status.Code(err) != codes.NotFound {
		t.Errorf("unknown container: %v", err)
	}
}

// CreateContainer waits for the boot-time setup and reports its failure;
// Health does not wait.
func TestCreateContainerWaitsForSetup(t *testing.T) {
	s := startSetup(func() error { return errors.New("mount 9p share: no such device") })
	svc := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir(), Ready: s.wait})
	ctx := context.Background()
	if _, err := svc.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		t.Fatalf("health: %v", err)
	}
	spec, _ := json.Marshal(&specs.Spec{Version: specs.Version, Process: &specs.Process{Args: []string{"true"}}, Root: &specs.Root{Path: "rootfs"}})
	_, err := svc.CreateContainer(ctx, &agentproto.CreateContainerRequest{ContainerId: "c1", Spec: spec})
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "no such device") {
		t.Fatalf("create after a failed setup: %v, want Unavailable with the setup's error", err)
	}

	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	blocked := startSetup(func() error { <-release; return nil })
	svc = NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir(), Ready: blocked.wait})
	cctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := svc.CreateContainer(cctx, &agentproto.CreateContainerRequest{ContainerId: "c2", Spec: spec}); err == nil {
		t.Fatal("create while setup never finishes: want an error when ctx ends")
	}
}

// Signal 0 asks whether the process is there, without the OCI runtime.
func TestSignalZeroProbesLiveness(t *testing.T) {
	svc := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir()})
	alive := &process{pid: os.Getpid(), exited: make(chan struct{})}
	gone := &process{pid: os.Getpid(), exited: make(chan struct{})}
	close(gone.exited)
	svc.containers["c1"] = &container{id: "c1", init: alive, execs: map[string]*process{"gone": gone}}
	ctx := context.Background()
	if _, err := svc.SignalProcess(ctx, &agentproto.SignalProcessRequest{ContainerId: "c1"}); err != nil {
		t.Errorf("signal 0 to a live init process: %v", err)
	}
	if _, err := svc.SignalProcess(ctx, &agentproto.SignalProcessRequest{ContainerId: "c1", ExecId: "gone", All: true}); status.Code(err) != codes.NotFound {
		t.Errorf("signal 0 to an exited process: %v, want NotFound", err)
	}
}

func startSetup(f func() error) *setup {
	s := newSetup()
	s.start(f)
	return s
}

// The host names the request and the container when it wraps an agent
// error ("start c1: ..."), so the agent's message says only what failed in
// the guest: repeating "start container c1" would make it say so twice.
func TestErrorsLeaveRequestAndContainerToTheCaller(t *testing.T) {
	dir := t.TempDir()
	svc := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} },
		ShareDir: filepath.Join(dir, "share"), BundleDir: filepath.Join(dir, "bundles"), ProcSys: filepath.Join(dir, "sys")})
	init := &process{pid: os.Getpid(), exited: make(chan struct{})}
	svc.containers["c1"] = &container{id: "c1", bundle: filepath.Join(dir, "bundles", "c1"), runc: failingRuntime{}, init: init, execs: map[string]*process{}}
	ctx := context.Background()
	spec, _ := json.Marshal(&specs.Spec{Version: "1.0.2", Root: &specs.Root{Path: "c2/rootfs"}, Process: &specs.Process{Args: []string{"sh"}, Cwd: "/"}})
	c1 := &agentproto.ContainerRequest{ContainerId: "c1"}
	// In order: remove last, as the others need c1.
	calls := []struct {
		name string
		call func() error
	}{
		{"create", func() error {
			_, err := svc.CreateContainer(ctx, &agentproto.CreateContainerRequest{ContainerId: "c2", Spec: spec})
			return err
		}},
		{"bad spec", func() error {
			_, err := svc.CreateContainer(ctx, &agentproto.CreateContainerRequest{ContainerId: "c2", Spec: []byte("{")})
			return err
		}},
		{"start", func() error { _, err := svc.StartContainer(ctx, c1); return err }},
		{"pause", func() error { _, err := svc.PauseContainer(ctx, c1); return err }},
		{"resume", func() error { _, err := svc.ResumeContainer(ctx, c1); return err }},
		{"update", func() error {
			_, err := svc.UpdateContainer(ctx, &agentproto.UpdateContainerRequest{ContainerId: "c1", Resources: []byte("{}")})
			return err
		}},
		{"ps", func() error { _, err := svc.ListProcesses(ctx, c1); return err }},
		{"kill", func() error {
			_, err := svc.SignalProcess(ctx, &agentproto.SignalProcessRequest{ContainerId: "c1", Signal: 9})
			return err
		}},
		{"exec", func() error {
			_, err := svc.ExecProcess(ctx, &agentproto.ExecProcessRequest{ContainerId: "c1", ExecId: "e1", Process: []byte(`{"args":["sh"],"cwd":"/"}`)})
			return err
		}},
		{"remove", func() error {
			_, err := svc.RemoveContainer(ctx, &agentproto.RemoveContainerRequest{ContainerId: "c1", Force: true})
			return err
		}},
	}
	for _, c := range calls {
		name, err := c.name, c.call()
		if err == nil {
			t.Errorf("%s: succeeded without runc", name)
			continue
		}
		msg := status.Convert(err).Message()
		for _, said := range []string{"c1", "c2", name + " "} {
			if strings.Contains(msg, said) {
				t.Errorf("%s: agent says %q, which repeats the caller's %q", name, msg, said)
			}
		}
	}
}

// StartClone is for a template's clone, once.
func TestStartClone(t *testing.T) {
	ctx := context.Background()
	req := &agentproto.StartCloneRequest{Entropy: make([]byte, MinCloneEntropy)}
	booted := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir()})
	if _, err := booted.StartClone(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("StartClone in a guest that is no template = %v, want FailedPrecondition", err)
	}
	calls := 0
	fail := errors.New("mount share: no channels available")
	clone := NewService(Config{Runtime: func(string) Runtime { return failingRuntime{} }, BundleDir: t.TempDir(),
		StartClone: func(context.Context, *agentproto.StartCloneRequest) error {
			calls++
			return fail
		}})
	if _, err := clone.StartClone(ctx, req); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), fail.Error()) {
		t.Errorf("StartClone whose work fails = %v, want Internal with the cause", err)
	}
	if _, err := clone.StartClone(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("second StartClone = %v, want FailedPrecondition", err)
	}
	if calls != 1 {
		t.Errorf("the clone's work ran %d times, want once", calls)
	}
}

func TestReseedRNGWantsEnoughEntropy(t *testing.T) {
	if err := ReseedRNG(make([]byte, MinCloneEntropy-1)); err == nil {
		t.Error("ReseedRNG accepted less entropy than a full reseed")
	}
}
