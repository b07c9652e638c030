package guest

import (
	"context"
	"testing"

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
