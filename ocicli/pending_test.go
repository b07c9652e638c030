package ocicli

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
)

func TestPendingCallsWaitForShortCallsOnly(t *testing.T) {
	var p pendingCalls
	release := make(chan struct{})
	started := make(chan struct{}, 2)
	call := func(name string) {
		_, _ = p.intercept(context.Background(), nil, &ttrpc.UnaryServerInfo{FullMethod: "/hull.agent.v1.Agent/" + name},
			func(context.Context, func(interface{}) error) (interface{}, error) {
				started <- struct{}{}
				<-release
				return nil, nil
			})
	}
	go call("WaitProcess") // ends with the sandbox: not waited for
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := p.wait(ctx); err != nil {
		t.Fatalf("wait with only a WaitProcess in flight: %v", err)
	}
	go call("SignalProcess")
	<-started
	short, cancelShort := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelShort()
	if err := p.wait(short); err == nil {
		t.Fatal("wait returned while SignalProcess was in flight")
	}
	done := make(chan error, 1)
	go func() { done <- p.wait(ctx) }()
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("wait after SignalProcess returned: %v", err)
	}
}
