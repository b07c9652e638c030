package ocicli

import (
	"context"
	"path"
	"sync"

	"github.com/containerd/ttrpc"
)

// endsWithSandbox are the agent calls that block until a process or a
// stream ends, which destroying the sandbox does: a stopping monitor does
// not wait for them.
var endsWithSandbox = map[string]bool{
	"WaitProcess": true, "ReadStdout": true, "ReadStderr": true, "WriteStdin": true, "DestroySandbox": true,
}

// pendingCalls counts the calls a monitor is forwarding to the agent that
// end by themselves (a kill, a state), so that a destroyed sandbox answers
// them before its one agent connection goes: `hull kill` of a container
// whose exit makes `hull run` delete the sandbox still gets its reply.
type pendingCalls struct {
	mu      sync.Mutex
	n       int
	waiters []chan struct{}
}

// intercept is a ttrpc server interceptor that counts the calls.
func (p *pendingCalls) intercept(ctx context.Context, u ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (interface{}, error) {
	if endsWithSandbox[path.Base(info.FullMethod)] {
		return m(ctx, u)
	}
	p.mu.Lock()
	p.n++
	p.mu.Unlock()
	defer p.done()
	return m(ctx, u)
}

func (p *pendingCalls) done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n--
	if p.n == 0 {
		for _, w := range p.waiters {
			close(w)
		}
		p.waiters = nil
	}
}

// wait returns once no counted call is in flight, or ctx ends.
func (p *pendingCalls) wait(ctx context.Context) error {
	p.mu.Lock()
	if p.n == 0 {
		p.mu.Unlock()
		return nil
	}
	w := make(chan struct{})
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
