package guest

import (
	"context"
	"encoding/json"
	"errors"
	"os"
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
