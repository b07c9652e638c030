package runtime

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/hull-runtime/hull/agentproto"
)

// LoadSpec reads and checks a bundle's config.json.
func LoadSpec(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("load spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("load spec %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	if err := ValidateSpec(&s); err != nil {
		return nil, fmt.Errorf("load spec %s: %w", filepath.Join(bundle, "config.json"), err)
	}
	return &s, nil
}

// CreateContainer shares a bundle's rootfs and volumes with the guest and
// creates the container there (its init process waits for StartContainer).
func (s *Sandbox) CreateContainer(ctx context.Context, cid, bundle string, spec *specs.Spec, stdin bool) error {
	g, err := GuestSpec(spec, cid, bundle, s.share)
	if err != nil {
		return fmt.Errorf("create container %s: %w", cid, err)
	}
	rctx, cancel := s.RequestContext(ctx)
	defer cancel()
	if _, err := s.agent.CreateContainer(rctx, &agentproto.CreateContainerRequest{ContainerId: cid, Spec: g, Stdin: stdin}); err != nil {
		_ = s.share.RemoveContainer(cid)
		return fmt.Errorf("create container %s: %w", cid, err)
	}
	return nil
}

// StartContainer starts a created container's init process.
func (s *Sandbox) StartContainer(ctx context.Context, cid string) error {
	rctx, cancel := s.RequestContext(ctx)
	defer cancel()
	if _, err := s.agent.StartContainer(rctx, &agentproto.ContainerRequest{ContainerId: cid}); err != nil {
		return fmt.Errorf("start container %s: %w", cid, err)
	}
	return nil
}

// RemoveContainer deletes the container in the guest and its share entries.
func (s *Sandbox) RemoveContainer(ctx context.Context, cid string, force bool) error {
	rctx, cancel := s.RequestContext(ctx)
	defer cancel()
	if _, err := s.agent.RemoveContainer(rctx, &agentproto.RemoveContainerRequest{ContainerId: cid, Force: force}); err != nil {
		return fmt.Errorf("remove container %s: %w", cid, err)
	}
	if err := s.share.RemoveContainer(cid); err != nil {
		return fmt.Errorf("remove container %s: %w", cid, err)
	}
	return nil
}

// Run creates, starts and waits for a container, relaying its streams, then
// removes it; it returns the exit status.
func (s *Sandbox) Run(ctx context.Context, cid, bundle string, spec *specs.Spec, stdio Stdio) (int, error) {
	if err := s.CreateContainer(ctx, cid, bundle, spec, stdio.Stdin != nil); err != nil {
		return -1, err
	}
	status, err := func() (int, error) {
		if err := s.StartContainer(ctx, cid); err != nil {
			return -1, err
		}
		return Relay(ctx, s.agent, cid, "", stdio)
	}()
	if rerr := s.RemoveContainer(context.WithoutCancel(ctx), cid, true); rerr != nil && err == nil {
		err = rerr
	}
	return status, err
}
