package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// ReadSpec reads and checks a config.json and returns it with its bytes.
func ReadSpec(path string) (*specs.Spec, []byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("load spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, nil, fmt.Errorf("load spec %s: %w", path, err)
	}
	if err := ValidateSpec(&s); err != nil {
		return nil, nil, fmt.Errorf("load spec %s: %w", path, err)
	}
	return &s, b, nil
}

// maxSpecBytes keeps a guest spec inside one ttrpc message (4 MiB), with
// room for the rest of the request.
const maxSpecBytes = 4<<20 - 64<<10

// Guest performs container operations in one sandbox through its agent
// (directly, or through the sandbox monitor) and its share directory. Its
// operations are steps of the caller's, which names the operation and the
// container in its errors; theirs say only what failed.
type Guest struct {
	Agent agentproto.AgentService
	Share *Share
	// Timeout bounds each request that does not wait on a workload.
	Timeout time.Duration
}

func (g *Guest) ctx(ctx context.Context) (context.Context, context.CancelFunc) {
	if g.Timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, g.Timeout)
}

// CreateContainer shares a bundle's rootfs and volumes with the guest and
// creates the container there (its init process waits for StartContainer).
// The namespaces it joins by path must be another container's of this
// sandbox, as NSPlan.Apply names them.
func (g *Guest) CreateContainer(ctx context.Context, cid, bundle string, spec *specs.Spec, stdin bool) error {
	gs, err := GuestSpec(spec, cid, bundle, g.Share)
	if err != nil {
		return err
	}
	if len(gs) > maxSpecBytes {
		_ = g.Share.RemoveContainer(cid)
		return fmt.Errorf("config too large for the agent channel: %d bytes, at most %d", len(gs), maxSpecBytes)
	}
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	if _, err := g.Agent.CreateContainer(rctx, &agentproto.CreateContainerRequest{ContainerId: cid, Spec: gs, Stdin: stdin}); err != nil {
		_ = g.Share.RemoveContainer(cid)
		return err
	}
	return nil
}

// StartContainer starts a created container's init process.
func (g *Guest) StartContainer(ctx context.Context, cid string) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	_, err := g.Agent.StartContainer(rctx, &agentproto.ContainerRequest{ContainerId: cid})
	return err
}

// RemoveContainer deletes the container in the guest and its share entries.
func (g *Guest) RemoveContainer(ctx context.Context, cid string, force bool) error {
	rctx, cancel := g.ctx(ctx)
	defer cancel()
	if _, err := g.Agent.RemoveContainer(rctx, &agentproto.RemoveContainerRequest{ContainerId: cid, Force: force}); err != nil && !isNotFound(err) {
		return err
	}
	return g.Share.RemoveContainer(cid)
}

// Run creates, starts and waits for a container, relaying its streams, then
// removes it; it returns the exit status.
func (g *Guest) Run(ctx context.Context, cid, bundle string, spec *specs.Spec, stdio Stdio) (int, error) {
	if err := g.CreateContainer(ctx, cid, bundle, spec, stdio.Stdin != nil); err != nil {
		return -1, fmt.Errorf("create container %s: %w", cid, err)
	}
	status, err := func() (int, error) {
		if err := g.StartContainer(ctx, cid); err != nil {
			return -1, fmt.Errorf("start container %s: %w", cid, err)
		}
		return Relay(ctx, g.Agent, cid, "", stdio)
	}()
	if rerr := g.RemoveContainer(context.WithoutCancel(ctx), cid, true); rerr != nil && err == nil {
		err = fmt.Errorf("remove container %s: %w", cid, rerr)
	}
	return status, err
}

// Guest returns the container operations of this sandbox.
func (s *Sandbox) Guest() *Guest {
	return &Guest{Agent: s.agent, Share: s.share, Timeout: s.cfg.Timeouts.Request.Duration}
}

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
