package ocicli

import (
	"context"
	"log/slog"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/hull-runtime/hull/agentproto"
)

// blockingAgent's waits last until their caller goes.
type blockingAgent struct {
	fakeAgent
	waiting chan struct{}
}

func (b *blockingAgent) WaitProcess(ctx context.Context, _ *agentproto.ProcessRequest) (*agentproto.WaitProcessResponse, error) {
	b.waiting <- struct{}{}
	<-ctx.Done()
	return nil, ctx.Err()
}

// waitThroughMonitor serves svc on a socket pair and calls WaitProcess on
// it; hangUp ends the call as the caller's death would (true) or by the
// call's own deadline (false).
func waitThroughMonitor(t *testing.T, svc *monitorService, agent *blockingAgent, hangUp bool) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentproto.RegisterAgentService(srv, svc)
	l, err := net.Listen("unix", t.TempDir()+"/m.sock")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	defer srv.Close()
	conn, err := net.Dial("unix", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	client := agentproto.NewClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := client.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: "c1", ExecId: "probe"})
		done <- err
	}()
	<-agent.waiting
	if hangUp {
		client.Close()
	}
	<-done
	// The monitor's handler ends after the client: wait for its kill.
	for deadline := time.Now().Add(2 * time.Second); len(agent.signals()) == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMonitorKillsAProcessWhoseWaiterHungUp(t *testing.T) {
	agent := &blockingAgent{waiting: make(chan struct{}, 1)}
	svc := &monitorService{AgentService: agent, log: slog.New(slog.DiscardHandler)}
	waitThroughMonitor(t, svc, agent, true)
	sigs := agent.signals()
	if len(sigs) != 1 || sigs[0].ContainerId != "c1" || sigs[0].ExecId != "probe" || sigs[0].Signal != uint32(syscall.SIGKILL) {
		t.Fatalf("signals after the waiter hung up: %v, want one SIGKILL of c1/probe", sigs)
	}
}

func TestMonitorLeavesAProcessWhoseWaitTimedOut(t *testing.T) {
	agent := &blockingAgent{waiting: make(chan struct{}, 1)}
	svc := &monitorService{AgentService: agent, log: slog.New(slog.DiscardHandler)}
	waitThroughMonitor(t, svc, agent, false)
	if sigs := agent.signals(); len(sigs) != 0 {
		t.Fatalf("a wait that timed out killed the process: %v", sigs)
	}
}

func TestMonitorStoppingKillsNothing(t *testing.T) {
	agent := &blockingAgent{waiting: make(chan struct{}, 1)}
	svc := &monitorService{AgentService: agent, log: slog.New(slog.DiscardHandler)}
	svc.stopping.Store(true)
	waitThroughMonitor(t, svc, agent, true)
	if sigs := agent.signals(); len(sigs) != 0 {
		t.Fatalf("a stopping monitor killed: %v", sigs)
	}
}
