package pod

import (
	"context"
	"encoding/json"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// The operations of Guest on running containers and their processes, beside
// the lifecycle ones in container.go. Each is one agent request, bounded by
// Guest.Timeout.

// SignalProcess sends sig to a process of container cid (eid "" for its
// init process), or with all to every process of the container. A process
// the agent does not know is ErrNotRunning.
func (g *Guest) SignalProcess(ctx context.Context, cid, eid string, sig syscall.Signal, all bool) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err := g.Agent.SignalProcess(rctx, &agentproto.SignalProcessRequest{ContainerId: cid, ExecId: eid, Signal: uint32(sig), All: all})
	if isNotFound(err) {
		return ErrNotRunning
	}
	return err
}

// ExecProcess starts process p, named eid, in running container cid; Relay
// carries its streams and waits for it. stdin says it reads its input.
func (g *Guest) ExecProcess(ctx context.Context, cid, eid string, p *specs.Process, stdin bool) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err = g.Agent.ExecProcess(rctx, &agentproto.ExecProcessRequest{ContainerId: cid, ExecId: eid, Process: b, Stdin: stdin})
	return err
}

// KillExec ends exec eid of container cid and lets the agent forget it: for
// an exec that started but that no one will relay.
func (g *Guest) KillExec(ctx context.Context, cid, eid string) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	proc := &agentproto.ProcessRequest{ContainerId: cid, ExecId: eid}
	_, err := g.Agent.SignalProcess(rctx, &agentproto.SignalProcessRequest{ContainerId: cid, ExecId: eid, Signal: uint32(syscall.SIGKILL)})
	if err == nil {
		_, err = g.Agent.WaitProcess(rctx, proc)
	}
	if err == nil {
		_, err = g.Agent.CloseProcess(rctx, proc)
	}
	return err
}

// PauseContainer freezes the container's processes.
func (g *Guest) PauseContainer(ctx context.Context, cid string) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err := g.Agent.PauseContainer(rctx, &agentproto.ContainerRequest{ContainerId: cid})
	return err
}

// ResumeContainer thaws a paused container.
func (g *Guest) ResumeContainer(ctx context.Context, cid string) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err := g.Agent.ResumeContainer(rctx, &agentproto.ContainerRequest{ContainerId: cid})
	return err
}

// UpdateContainer changes the container's resource limits in the guest.
func (g *Guest) UpdateContainer(ctx context.Context, cid string, res *specs.LinuxResources) error {
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err = g.Agent.UpdateContainer(rctx, &agentproto.UpdateContainerRequest{ContainerId: cid, Resources: b})
	return err
}

// StatsContainer reads the container's resource usage in the guest.
func (g *Guest) StatsContainer(ctx context.Context, cid string) (*agentproto.StatsContainerResponse, error) {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	return g.Agent.StatsContainer(rctx, &agentproto.ContainerRequest{ContainerId: cid})
}

// ListProcesses returns the guest PIDs of the container's processes.
func (g *Guest) ListProcesses(ctx context.Context, cid string) ([]int, error) {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	resp, err := g.Agent.ListProcesses(rctx, &agentproto.ContainerRequest{ContainerId: cid})
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(resp.Pids))
	for _, p := range resp.Pids {
		pids = append(pids, int(p))
	}
	return pids, nil
}

// ResizeTty sets the terminal size of a process of container cid (eid ""
// for its init process).
func (g *Guest) ResizeTty(ctx context.Context, cid, eid string, rows, cols uint16) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err := g.Agent.ResizeTty(rctx, &agentproto.ResizeTtyRequest{ContainerId: cid, ExecId: eid, Rows: uint32(rows), Cols: uint32(cols)})
	return err
}
