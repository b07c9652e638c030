package guest

import (
	"errors"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/containerd/console"
	runc "github.com/containerd/go-runc"
)

// process is one container process (init or exec) and its streams.
type process struct {
	pid int

	stdin  io.WriteCloser
	stdout io.Reader
	stderr io.Reader
	// closers release the agent's ends of the streams on removal.
	closers []io.Closer
	console console.Console

	readMu  sync.Mutex // one reader per stream
	errMu   sync.Mutex
	stdinMu sync.Mutex

	// status and oomKilled are set before exited is closed.
	exited    chan struct{}
	status    int
	oomKilled bool
}

// stdio holds the streams of a process being created, in the shape runc
// wants (pipes, or a console socket for a terminal).
type stdio struct {
	io     runc.IO
	socket *runc.Socket
}

func newStdio(terminal, stdin bool) (*stdio, error) {
	if terminal {
		s, err := runc.NewTempConsoleSocket()
		if err != nil {
			return nil, err
		}
		return &stdio{socket: s}, nil
	}
	pio, err := runc.NewPipeIO(0, 0, func(o *runc.IOOption) { o.OpenStdin = stdin })
	if err != nil {
		return nil, err
	}
	return &stdio{io: pio}, nil
}

// attach finishes the streams once runc has started the process.
func (s *stdio) attach(p *process) error {
	if s.socket != nil {
		defer s.socket.Close()
		con, err := s.socket.ReceiveMaster()
		if err != nil {
			return err
		}
		p.console = con
		p.stdin = con
		p.stdout = ttyReader{con}
		p.closers = append(p.closers, con)
		return nil
	}
	p.stdin = s.io.Stdin()
	p.stdout = s.io.Stdout()
	p.stderr = s.io.Stderr()
	p.closers = append(p.closers, s.io)
	return nil
}

func (s *stdio) close() {
	if s.socket != nil {
		s.socket.Close()
	}
	if s.io != nil {
		s.io.Close()
	}
}

// ttyReader turns the EIO a pty master reads once the slave side is gone
// into EOF.
type ttyReader struct{ r io.Reader }

func (t ttyReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if err != nil && errors.Is(err, syscall.EIO) {
		return n, io.EOF
	}
	return n, err
}

// read reads one chunk of a stream; eof is set when it is closed.
func read(mu *sync.Mutex, r io.Reader, max uint32) ([]byte, bool, error) {
	if r == nil {
		return nil, true, nil
	}
	if max == 0 || max > 1<<20 {
		max = 64 << 10
	}
	mu.Lock()
	defer mu.Unlock()
	buf := make([]byte, max)
	n, err := r.Read(buf)
	if n > 0 {
		return buf[:n], false, nil
	}
	if err == nil {
		return nil, false, nil
	}
	if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) {
		return nil, true, nil
	}
	return nil, false, err
}

func (p *process) wait() int {
	<-p.exited
	return p.status
}

func (p *process) release() {
	for _, c := range p.closers {
		c.Close()
	}
}
