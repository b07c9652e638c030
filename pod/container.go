package pod

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
