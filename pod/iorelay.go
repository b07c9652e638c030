package pod

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hull-runtime/hull/agentproto"
)

// Stdio are the host ends of a process's streams; nil ones are not relayed.
type Stdio struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// drainGrace bounds how long output is still relayed after the process has
// exited: a background child may hold the streams open forever.
const drainGrace = 2 * time.Second

// Relay copies a guest process's streams to and from stdio until the process
// has exited and its output is drained, and returns its exit status (128+N
// when killed by signal N).
func Relay(ctx context.Context, agent agentproto.AgentService, cid, eid string, stdio Stdio) (int, error) {
	exit, err := RelayExit(ctx, agent, cid, eid, stdio)
	return exit.Status, err
}

// Exit is how a guest process ended.
type Exit struct {
	// Status is the exit code, or 128+N when it died of signal N.
	Status int
	// OOMKilled says the guest's OOM killer ended the container's init.
	OOMKilled bool
}

// RelayExit is Relay, returning all that is known of the process's end.
func RelayExit(ctx context.Context, agent agentproto.AgentService, cid, eid string, stdio Stdio) (Exit, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	drained := make(chan struct{})
	for _, out := range []struct {
		w    io.Writer
		read func(context.Context, *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error)
	}{{stdio.Stdout, agent.ReadStdout}, {stdio.Stderr, agent.ReadStderr}} {
		if out.w == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pumpOut(ctx, out.read, cid, eid, out.w)
		}()
	}
	go func() { wg.Wait(); close(drained) }()
	if stdio.Stdin != nil {
		go pumpIn(ctx, agent, cid, eid, stdio.Stdin)
	}
	resp, err := agent.WaitProcess(ctx, &agentproto.ProcessRequest{ContainerId: cid, ExecId: eid})
	if err != nil {
		return Exit{Status: -1}, fmt.Errorf("wait for %s/%s: %w", cid, eid, err)
	}
	select {
	case <-drained:
	case <-time.After(drainGrace):
	case <-ctx.Done():
	}
	if eid != "" {
		// The agent may forget the exec now; nothing more will be read.
		_, _ = agent.CloseProcess(context.WithoutCancel(ctx), &agentproto.ProcessRequest{ContainerId: cid, ExecId: eid})
	}
	return Exit{Status: int(resp.Status), OOMKilled: resp.OomKilled}, nil
}

func pumpOut(ctx context.Context, read func(context.Context, *agentproto.ReadStreamRequest) (*agentproto.ReadStreamResponse, error), cid, eid string, w io.Writer) {
	req := &agentproto.ReadStreamRequest{ContainerId: cid, ExecId: eid, Max: 64 << 10}
	for {
		resp, err := read(ctx, req)
		if err != nil || resp.Eof {
			return
		}
		if _, err := w.Write(resp.Data); err != nil {
			return
		}
	}
}

func pumpIn(ctx context.Context, agent agentproto.AgentService, cid, eid string, r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := agent.WriteStdin(ctx, &agentproto.WriteStdinRequest{ContainerId: cid, ExecId: eid, Data: buf[:n]}); werr != nil {
				return
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				_, _ = agent.CloseStdin(ctx, &agentproto.ProcessRequest{ContainerId: cid, ExecId: eid})
			}
			return
		}
	}
}
