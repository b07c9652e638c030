package shim

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	eventstypes "github.com/containerd/containerd/api/events"
	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
)

// fakeContainerd is containerd's ttrpc events service: what it is
// forwarded arrives on got.
type fakeContainerd struct {
	got chan *types.Envelope
}

func (f *fakeContainerd) Forward(_ context.Context, req *eventsapi.ForwardRequest) (*emptypb.Empty, error) {
	f.got <- req.Envelope
	return &emptypb.Empty{}, nil
}

// serveEvents serves a fakeContainerd at sock until stop, which ends it as
// containerd's exit would: its connections closed at once, whatever they
// were doing (ttrpc's own Close lets a busy connection serve on).
func serveEvents(t *testing.T, sock string, got chan *types.Envelope) (stop func()) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	eventsapi.RegisterEventsService(srv, &fakeContainerd{got: got})
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	conns := &connTracker{Listener: l}
	go func() { _ = srv.Serve(context.Background(), conns) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			srv.Close()
			conns.closeAll()
		})
	}
	t.Cleanup(stop)
	return stop
}

// connTracker is a listener that can close the connections it accepted.
type connTracker struct {
	net.Listener
	mu    sync.Mutex
	conns []net.Conn
}

func (l *connTracker) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.mu.Lock()
		l.conns = append(l.conns, c)
		l.mu.Unlock()
	}
	return c, err
}

func (l *connTracker) closeAll() {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		c.Close()
	}
}

func receive(t *testing.T, got chan *types.Envelope) *types.Envelope {
	t.Helper()
	select {
	case env := <-got:
		return env
	case <-time.After(10 * time.Second):
		t.Fatal("no event reached containerd")
		return nil
	}
}

func exitOf(t *testing.T, env *types.Envelope) *eventstypes.TaskExit {
	t.Helper()
	if env.Event.TypeUrl != "containerd.events.TaskExit" {
		t.Fatalf("event type %q, want containerd.events.TaskExit", env.Event.TypeUrl)
	}
	var e eventstypes.TaskExit
	if err := proto.Unmarshal(env.Event.Value, &e); err != nil {
		t.Fatal(err)
	}
	return &e
}

func TestPublisherForwardsInOrder(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock.ttrpc")
	got := make(chan *types.Envelope, 100)
	serveEvents(t, sock, got)
	pub := newPublisher("unix://"+sock, "k8s.io", slog.New(slog.DiscardHandler))
	defer pub.Close()
	const n = 50
	for i := range n {
		pub.Publish(topicExit, &eventstypes.TaskExit{ContainerID: "c1", ExitStatus: uint32(i)})
	}
	pub.Publish(topicOOM, &eventstypes.TaskOOM{ContainerID: "c1"})
	for i := range n {
		env := receive(t, got)
		if env.Namespace != "k8s.io" || env.Topic != "/tasks/exit" || env.Timestamp == nil {
			t.Fatalf("envelope %d: namespace %q, topic %q, timestamp %v", i, env.Namespace, env.Topic, env.Timestamp)
		}
		if e := exitOf(t, env); e.ContainerID != "c1" || e.ExitStatus != uint32(i) {
			t.Fatalf("event %d is the exit %d of %s: out of order", i, e.ExitStatus, e.ContainerID)
		}
	}
	if env := receive(t, got); env.Topic != "/tasks/oom" || env.Event.TypeUrl != "containerd.events.TaskOOM" {
		t.Fatalf("last event: topic %q, type %q", env.Topic, env.Event.TypeUrl)
	}
}

// retryLog signals each "containerd away" retry the publisher logs.
type retryLog struct {
	slog.Handler
	retried chan struct{}
}

func (h retryLog) Enabled(context.Context, slog.Level) bool { return true }

func (h retryLog) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		select {
		case h.retried <- struct{}{}:
		default:
		}
	}
	return nil
}

func TestPublisherDeliversAcrossContainerdRestart(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock.ttrpc")
	got := make(chan *types.Envelope, 10)
	stop := serveEvents(t, sock, got)
	log := retryLog{Handler: slog.DiscardHandler, retried: make(chan struct{}, 1)}
	pub := newPublisher(sock, "default", slog.New(log))
	defer pub.Close()
	pub.Publish(topicExit, &eventstypes.TaskExit{ContainerID: "before"})
	if e := exitOf(t, receive(t, got)); e.ContainerID != "before" {
		t.Fatalf("got the exit of %s", e.ContainerID)
	}

	// containerd goes: its socket with it. What is published meanwhile
	// waits, in order.
	stop()
	pub.Publish(topicExit, &eventstypes.TaskExit{ContainerID: "during-1"})
	pub.Publish(topicExit, &eventstypes.TaskExit{ContainerID: "during-2"})
	select {
	case <-log.retried:
	case <-time.After(10 * time.Second):
		t.Fatal("the publisher never found containerd gone")
	}
	select {
	case env := <-got:
		t.Fatalf("event %s delivered with containerd down", env.Topic)
	default:
	}

	// containerd is back, at the same address.
	serveEvents(t, sock, got)
	for _, want := range []string{"during-1", "during-2"} {
		e := exitOf(t, receive(t, got))
		if e.ContainerID == "before" && want == "during-1" {
			// Delivery is at least once: containerd went before the
			// reply to the last event reached the shim, which sends it
			// again.
			e = exitOf(t, receive(t, got))
		}
		if e.ContainerID != want {
			t.Fatalf("after the restart: the exit of %s, want %s", e.ContainerID, want)
		}
	}
}

func TestPublisherCloseSendsWhatIsQueued(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "containerd.sock.ttrpc")
	got := make(chan *types.Envelope, 10)
	serveEvents(t, sock, got)
	pub := newPublisher(sock, "default", slog.New(slog.DiscardHandler))
	pub.Publish(topicDelete, &eventstypes.TaskDelete{ContainerID: "c1"})
	pub.Close()
	select {
	case env := <-got:
		if env.Topic != topicDelete {
			t.Fatalf("topic %q", env.Topic)
		}
	default:
		t.Fatal("Close returned before the queued event was sent")
	}
	// A relay that ends after the shim stopped publishing: dropped, not a
	// panic.
	pub.Publish(topicExit, &eventstypes.TaskExit{ContainerID: "late"})
	pub.Close()
}
