package guest

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/ttrpc"

	"github.com/hull-runtime/hull/agentproto"
)

// serveAgent runs serve for a Service on a unix socket and returns a client
// on it, and the channel serve's result arrives on.
func serveAgent(t *testing.T, wait time.Duration) (*agentproto.Client, <-chan error) {
	t.Helper()
	path, done := startAgent(t, wait)
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := agentproto.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c, done
}

// startAgent runs serve for a Service on a unix socket and returns the
// socket's path and the channel serve's result arrives on.
func startAgent(t *testing.T, wait time.Duration) (string, <-chan error) {
	t.Helper()
	owned := make(chan struct{})
	close(owned)
	return startAgentWith(t, Config{}, owned, wait)
}

// startAgentWith is startAgent for a Service of cfg (its runtime fails, its
// bundles go to a temporary directory) that is owned once owned is closed.
func startAgentWith(t *testing.T, cfg Config, owned <-chan struct{}, wait time.Duration) (string, <-chan error) {
	t.Helper()
	cfg.Runtime = func(string) Runtime { return failingRuntime{} }
	cfg.BundleDir = t.TempDir()
	svc := NewService(cfg)
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentproto.RegisterAgentService(srv, svc)
	t.Cleanup(func() { srv.Close() })
	path := filepath.Join(t.TempDir(), "agent.sock")
	ul, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l := &oneAtATime{Listener: ul, free: make(chan struct{}, 1)}
	l.free <- struct{}{}
	done := make(chan error, 1)
	go func() { done <- serve(srv, l, svc.Destroyed(), owned, wait, slog.New(slog.DiscardHandler)) }()
	return path, done
}

// destroyAndWait sends DestroySandbox, then calls hangUp and wants serve to
// return nil; hangUp checks what it must before the host hangs up.
func destroyAndWait(t *testing.T, wait time.Duration, hangUp func(*agentproto.Client, <-chan error)) {
	t.Helper()
	c, done := serveAgent(t, wait)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.DestroySandbox(ctx, &agentproto.DestroySandboxRequest{}); err != nil {
		t.Fatalf("DestroySandbox: %v", err)
	}
	hangUp(c, done)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("serve still running")
	}
}

// After DestroySandbox the agent powers off (serve returns) only once the
// host has hung up, that is once it has the reply; no timer decides.
func TestServeUntilHostHasDestroyReply(t *testing.T) {
	destroyAndWait(t, time.Minute, func(c *agentproto.Client, done <-chan error) {
		// However long the host takes to hang up, the VM stays.
		select {
		case err := <-done:
			t.Fatalf("serve returned (%v) while the host was still connected", err)
		case <-time.After(200 * time.Millisecond):
		}
		c.Close()
	})
}

// A host that never hangs up does not keep the VM for ever.
func TestServeGivesUpOnAHostThatStays(t *testing.T) {
	destroyAndWait(t, 50*time.Millisecond, func(*agentproto.Client, <-chan error) {})
}

// A host that hangs up without destroying the sandbox has died (it is the
// sandbox's owner): the agent powers off, so that a QEMU that outlived it
// ends too.
func TestServeEndsWhenTheHostHangsUpFirst(t *testing.T) {
	c, done := serveAgent(t, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		t.Fatalf("Health: %v", err)
	}
	c.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("serve still running after the host hung up")
	}
}

// A connection that ends before any request (a serial port whose host end
// is not connected yet) is not the host hanging up.
func TestServeOutlivesAnEmptyConnection(t *testing.T) {
	path, done := startAgent(t, time.Minute)
	empty, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	empty.Close()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := agentproto.NewClient(conn)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		t.Fatalf("Health after an empty connection: %v", err)
	}
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) while the host was connected", err)
	default:
	}
}

// oneAtATime accepts a connection only once the previous one is closed, as
// the agent's virtio-serial port does.
type oneAtATime struct {
	net.Listener
	free chan struct{}
}

func (l *oneAtATime) Accept() (net.Conn, error) {
	<-l.free
	c, err := l.Listener.Accept()
	if err != nil {
		l.free <- struct{}{}
		return nil, err
	}
	return &releasingConn{Conn: c, release: func() { l.free <- struct{}{} }}, nil
}

type releasingConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *releasingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// A VM template's host hangs up before the template is saved; the agent
// then waits for a clone's host, and once StartClone has made the clone
// the sandbox's own, that host's hangup powers it off as after a boot.
func TestServeTemplateOutlivesItsHostUntilCloned(t *testing.T) {
	owned := make(chan struct{})
	var got *agentproto.StartCloneRequest
	cfg := Config{StartClone: func(_ context.Context, req *agentproto.StartCloneRequest) error {
		got = req
		close(owned)
		return nil
	}}
	path, done := startAgentWith(t, cfg, owned, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() *agentproto.Client {
		conn, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c := agentproto.NewClient(conn)
		t.Cleanup(func() { c.Close() })
		return c
	}
	template := dial()
	if _, err := template.Health(ctx, &agentproto.HealthRequest{}); err != nil {
		t.Fatalf("Health: %v", err)
	}
	template.Close()
	<-template.Done()

	clone := dial()
	req := &agentproto.StartCloneRequest{Entropy: make([]byte, MinCloneEntropy), UnixNano: 42}
	if _, err := clone.StartClone(ctx, req); err != nil {
		t.Fatalf("StartClone after the template's host hung up: %v", err)
	}
	if got == nil || got.UnixNano != 42 {
		t.Errorf("StartClone reached the guest as %v, want the host's request", got)
	}
	select {
	case err := <-done:
		t.Fatalf("serve returned (%v) while the clone's host is connected", err)
	default:
	}
	clone.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve = %v, want nil", err)
		}
	case <-ctx.Done():
		t.Fatal("serve still running after the clone's host hung up")
	}
}
