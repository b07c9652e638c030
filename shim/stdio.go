package shim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/fifo"

	"github.com/hull-runtime/hull/pod"
)

// stdioPaths are a process's streams as containerd names them: FIFO paths
// (or file:// URIs for output), "" for none.
type stdioPaths struct {
	stdin, stdout, stderr string
	terminal              bool
}

// pipes are the host ends of one process's streams, open for its relay.
type pipes struct {
	stdin *closableReader
	out   []io.WriteCloser
	// keep are read ends held open so that a write never fails with EPIPE
	// while containerd (the FIFOs' reader) restarts.
	keep []io.Closer
	pod.Stdio
}

// openStdio opens the streams containerd handed over. Output FIFOs are
// open for reading on containerd's side already; the input FIFO is opened
// without waiting for its writer, which may come later (ctr attaches its
// stdin after the task starts).
func openStdio(ctx context.Context, p stdioPaths) (_ *pipes, err error) {
	ps := &pipes{}
	defer func() {
		if err != nil {
			ps.Close()
		}
	}()
	if p.stdin != "" {
		f, err := fifo.OpenFifo(ctx, p.stdin, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
		if err != nil {
			return nil, fmt.Errorf("open stdin %s: %w", p.stdin, err)
		}
		ps.stdin = &closableReader{r: f, closed: make(chan struct{}), eof: make(chan struct{})}
		ps.Stdin = ps.stdin
	}
	var err2 error
	if ps.Stdout, err2 = ps.openOut(ctx, p.stdout); err2 != nil {
		return nil, err2
	}
	if p.terminal || p.stderr == "" {
		// A terminal's output is one stream: stderr is in stdout.
		return ps, nil
	}
	if p.stderr == p.stdout {
		ps.Stderr = ps.Stdout
		return ps, nil
	}
	if ps.Stderr, err2 = ps.openOut(ctx, p.stderr); err2 != nil {
		return nil, err2
	}
	return ps, nil
}

func (ps *pipes) openOut(ctx context.Context, name string) (io.Writer, error) {
	if name == "" {
		return nil, nil
	}
	u, err := url.Parse(name)
	if err == nil && u.Scheme == "file" {
		if err := os.MkdirAll(filepath.Dir(u.Path), 0o755); err != nil {
			return nil, fmt.Errorf("open output %s: %w", name, err)
		}
		f, err := os.OpenFile(u.Path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
		if err != nil {
			return nil, fmt.Errorf("open output %s: %w", name, err)
		}
		ps.out = append(ps.out, f)
		return f, nil
	}
	if err == nil && u.Scheme != "" {
		return nil, fmt.Errorf("open output %s: scheme %q is not supported: use a FIFO or file://", name, u.Scheme)
	}
	w, err := fifo.OpenFifo(ctx, name, syscall.O_WRONLY, 0)
	if err != nil {
		return nil, fmt.Errorf("open output %s: %w", name, err)
	}
	ps.out = append(ps.out, w)
	r, err := fifo.OpenFifo(ctx, name, syscall.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("open output %s: %w", name, err)
	}
	ps.keep = append(ps.keep, r)
	return w, nil
}

// Close closes every stream; output first, so that containerd's readers
// see the end of the process's output.
func (ps *pipes) Close() {
	for _, w := range ps.out {
		_ = w.Close()
	}
	for _, c := range ps.keep {
		_ = c.Close()
	}
	if ps.stdin != nil {
		ps.stdin.Close()
	}
}

// stdinGrace is how long CloseIO lets the input drain before it ends it.
const stdinGrace = time.Second

// closableReader is a process's input FIFO. Its writer hanging up is the end
// of input; so is CloseIO, which containerd sends once its client closed
// stdin: Close turns the pending read into io.EOF.
type closableReader struct {
	r      io.ReadCloser
	once   sync.Once
	closed chan struct{}
	// eof closes when a read has returned the end of input.
	eofOnce sync.Once
	eof     chan struct{}
}

func (c *closableReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	if err != nil {
		select {
		case <-c.closed:
			err = io.EOF
		default:
		}
		if errors.Is(err, io.EOF) {
			c.markEOF()
		}
	}
	return n, err
}

func (c *closableReader) markEOF() {
	c.eofOnce.Do(func() {
		if c.eof != nil {
			close(c.eof)
		}
	})
}

// CloseInput ends the input: at once if it has already drained, else after
// a grace for the bytes still in the FIFO.
func (c *closableReader) CloseInput() {
	if c.eof != nil {
		select {
		case <-c.eof:
		case <-time.After(stdinGrace):
		}
	}
	c.Close()
}

func (c *closableReader) Close() {
	c.once.Do(func() {
		close(c.closed)
		_ = c.r.Close()
	})
}
