package shim

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	eventsapi "github.com/containerd/containerd/api/services/ttrpc/events/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/ttrpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Topics of the task events a shim sends.
const (
	topicCreate      = "/tasks/create"
	topicStart       = "/tasks/start"
	topicExit        = "/tasks/exit"
	topicDelete      = "/tasks/delete"
	topicExecAdded   = "/tasks/exec-added"
	topicExecStarted = "/tasks/exec-started"
	topicPaused      = "/tasks/paused"
	topicResumed     = "/tasks/resumed"
	topicOOM         = "/tasks/oom"
)

// Publisher sends task events to containerd.
type Publisher interface {
	Publish(topic string, event proto.Message)
	Close()
}

// publishRetry bounds how long one event is retried while containerd is
// away (restarting): it reconnects and is told then.
const publishRetry = 2 * time.Minute

// ttrpcPublisher forwards events to containerd's ttrpc events service
// (TTRPC_ADDRESS), in the order they were published: an OOM comes before the
// exit it caused, an exit before the delete.
type ttrpcPublisher struct {
	address, namespace string
	log                *slog.Logger
	queue              chan *types.Envelope
	// stop asks run to send what is queued and end; done says it has.
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once

	client *ttrpc.Client
}

// closeWait bounds how long Close waits for queued events to reach a
// containerd that may be gone.
const closeWait = 10 * time.Second

func newPublisher(address, namespace string, log *slog.Logger) *ttrpcPublisher {
	p := &ttrpcPublisher{address: strings.TrimPrefix(address, "unix://"), namespace: namespace, log: log,
		queue: make(chan *types.Envelope, 256), stop: make(chan struct{}), done: make(chan struct{})}
	go p.run()
	return p
}

// Publish queues an event; after Close it is dropped.
func (p *ttrpcPublisher) Publish(topic string, event proto.Message) {
	b, err := proto.Marshal(event)
	if err != nil {
		p.log.Error("event", "topic", topic, "err", err)
		return
	}
	env := &types.Envelope{Timestamp: timestamppb.Now(), Namespace: p.namespace, Topic: topic,
		Event: &anypb.Any{TypeUrl: string(event.ProtoReflect().Descriptor().FullName()), Value: b}}
	select {
	case p.queue <- env:
	case <-p.stop:
		p.log.Warn("event after close dropped", "topic", topic)
	}
}

// Close sends what is queued, waiting closeWait at most, and stops.
func (p *ttrpcPublisher) Close() {
	p.closeOnce.Do(func() { close(p.stop) })
	select {
	case <-p.done:
	case <-time.After(closeWait):
		p.log.Warn("events still queued at exit")
	}
}

func (p *ttrpcPublisher) run() {
	defer close(p.done)
	defer func() {
		if p.client != nil {
			p.client.Close()
		}
	}()
	for {
		select {
		case env := <-p.queue:
			p.send(env)
		case <-p.stop:
			for {
				select {
				case env := <-p.queue:
					p.send(env)
				default:
					return
				}
			}
		}
	}
}

// send forwards one event, retrying while containerd is away (a restart)
// for publishRetry at most.
func (p *ttrpcPublisher) send(env *types.Envelope) {
	deadline := time.Now().Add(publishRetry)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, 2*time.Second) {
		err := p.forward(env)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			p.log.Error("event lost", "topic", env.Topic, "err", err)
			return
		}
		p.log.Debug("event: containerd away, retrying", "topic", env.Topic, "err", err)
		time.Sleep(backoff)
	}
}

func (p *ttrpcPublisher) forward(env *types.Envelope) error {
	if p.client == nil {
		conn, err := net.DialTimeout("unix", p.address, 5*time.Second)
		if err != nil {
			return fmt.Errorf("dial containerd %s: %w", p.address, err)
		}
		p.client = ttrpc.NewClient(conn)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := eventsapi.NewEventsClient(p.client).Forward(ctx, &eventsapi.ForwardRequest{Envelope: env})
	if err != nil {
		p.client.Close()
		p.client = nil
	}
	return err
}
