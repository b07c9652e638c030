package runtime

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

// RunHooks runs hooks on the host, in order, each with the container's state
// as JSON on stdin, as the OCI runtime spec says.
func RunHooks(ctx context.Context, kind string, hooks []specs.Hook, state specs.State) error {
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
