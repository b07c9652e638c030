package ocicli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultHookTimeout applies to hooks that set none.
const defaultHookTimeout = 2 * time.Minute

// hostHooks are the kinds of hooks hull runs, all on the host, by the name
// the spec (and `hull features`) gives them. startContainer hooks would run
// inside the container, in the guest, where host paths mean nothing: they
// are not supported.
var hostHooks = map[string]func(*specs.Hooks) []specs.Hook{
	"prestart":      func(h *specs.Hooks) []specs.Hook { return h.Prestart },
	"createRuntime": func(h *specs.Hooks) []specs.Hook { return h.CreateRuntime },
	"poststart":     func(h *specs.Hooks) []specs.Hook { return h.Poststart },
	"poststop":      func(h *specs.Hooks) []specs.Hook { return h.Poststop },
}

// RunHooks runs the spec's hooks of one kind (a key of hostHooks) on the
// host, in order, each with the container's state as JSON on stdin, as the
// OCI runtime spec says.
func RunHooks(ctx context.Context, kind string, spec *specs.Hooks, state specs.State) error {
	of, ok := hostHooks[kind]
	if !ok {
		return fmt.Errorf("%s hooks are not supported", kind)
	}
	if spec == nil {
		return nil
	}
	hooks := of(spec)
	if len(hooks) == 0 {
		return nil
	}
	in, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("%s hook: %w", kind, err)
	}
	for _, h := range hooks {
		timeout := defaultHookTimeout
		if h.Timeout != nil && *h.Timeout > 0 {
			timeout = time.Duration(*h.Timeout) * time.Second
		}
		hctx, cancel := context.WithTimeout(ctx, timeout)
		cmd := exec.CommandContext(hctx, h.Path)
		if len(h.Args) > 0 {
			cmd.Args = h.Args
		}
		cmd.Env = h.Env
		cmd.Stdin = bytes.NewReader(in)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		cancel()
		if err != nil {
			return fmt.Errorf("%s hook %s: %w: %s", kind, h.Path, err, bytes.TrimSpace(out.Bytes()))
		}
	}
	return nil
}
