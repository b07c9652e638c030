package pod

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/hull-runtime/hull/agentproto"
)

// signalAgent answers SignalProcess with err and records what it was asked;
// any other call panics (the nil AgentService).
type signalAgent struct {
	agentproto.AgentService
	err  error
	got  []*agentproto.SignalProcessRequest
	wait func(context.Context)
}

func (a *signalAgent) SignalProcess(ctx context.Context, req *agentproto.SignalProcessRequest) (*agentproto.Empty, error) {
	a.got = append(a.got, req)
	if a.wait != nil {
		a.wait(ctx)
	}
	return &agentproto.Empty{}, a.err
}

// A process the agent does not know is one that is not running: both
// front ends branch on ErrNotRunning, not on the agent's status codes.
func TestGuestSignalProcessNotFoundIsNotRunning(t *testing.T) {
	a := &signalAgent{err: status.Error(codes.NotFound, "no process")}
	g := &Guest{Agent: a}
	err := g.SignalProcess(t.Context(), "c1", "e1", syscall.SIGTERM, true)
	if !errors.Is(err, ErrNotRunning) {
		t.Fatalf("SignalProcess: %v, want ErrNotRunning", err)
	}
	want := &agentproto.SignalProcessRequest{ContainerId: "c1", ExecId: "e1", Signal: uint32(syscall.SIGTERM), All: true}
	if len(a.got) != 1 || !proto.Equal(a.got[0], want) {
		t.Fatalf("agent asked %v, want %v", a.got, want)
	}

	a.err = status.Error(codes.Internal, "boom")
	if err := g.SignalProcess(t.Context(), "c1", "", syscall.SIGKILL, false); err == nil || errors.Is(err, ErrNotRunning) {
		t.Fatalf("SignalProcess with an agent error: %v, want that error", err)
	}
}

// Requests that do not wait on a workload are bounded by Guest.Timeout.
func TestGuestRequestsHaveADeadline(t *testing.T) {
	var deadline bool
	a := &signalAgent{wait: func(ctx context.Context) { _, deadline = ctx.Deadline() }}
	g := &Guest{Agent: a, Timeout: time.Minute}
	if err := g.SignalProcess(context.Background(), "c1", "", syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	if !deadline {
		t.Fatal("SignalProcess reached the agent without a deadline")
	}
}
