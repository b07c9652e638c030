package agentproto

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/mdlayher/vsock"
	"golang.org/x/sys/unix"
)

// ContainerNSPrefix marks a namespace path in a guest spec as "the namespace
// of this other container's init process in the same guest", as in
// "container:ID": how a container shares another's IPC, UTS, PID, mount
// or cgroup namespace (the host names the container, see pod.NSPlan).
const ContainerNSPrefix = "container:"

// Client is a typed agent client over one ttrpc connection.
type Client struct {
	AgentService
	conn *ttrpc.Client
	done chan struct{}
}

// NewClient speaks the agent protocol over conn. Closing the client closes conn.
func NewClient(conn net.Conn) *Client {
	done := make(chan struct{})
	c := ttrpc.NewClient(conn, ttrpc.WithOnClose(func() { close(done) }))
	return &Client{AgentService: NewAgentClient(c), conn: c, done: done}
}

// Close ends the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Done is closed when the connection is gone.
func (c *Client) Done() <-chan struct{} { return c.done }

// DialUnix connects to a unix socket, retrying until it exists or ctx ends.
// The virtio-serial chardev of QEMU is such a socket.
func DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	for {
		conn, err := d.DialContext(ctx, "unix", path)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial %s: %w", path, err)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// DialVsock connects to the agent's vsock port in guest cid, retrying until
// the guest listens or ctx ends.
func DialVsock(ctx context.Context, cid, port uint32) (net.Conn, error) {
	for {
		conn, err := vsock.Dial(cid, port, nil)
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dial vsock %d:%d: %w", cid, port, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ListenVsock listens on a vsock port inside the guest.
func ListenVsock(port uint32) (net.Listener, error) {
	l, err := vsock.Listen(port, nil)
	if err != nil {
		return nil, fmt.Errorf("listen vsock port %d: %w", port, err)
	}
	return l, nil
}

// FindSerialPort returns the /dev path of the virtio-serial port called name,
// found through /sys/class/virtio-ports/*/name (sysRoot is "/" in a guest).
func FindSerialPort(sysRoot, name string) (string, error) {
	dir := filepath.Join(sysRoot, "sys/class/virtio-ports")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", fmt.Errorf("find virtio port %q: %w", name, err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name(), "name"))
		if err != nil {
			continue
		}
		if strings.TrimSpace(string(b)) == name {
			return filepath.Join(sysRoot, "dev", e.Name()), nil
		}
	}
	return "", fmt.Errorf("find virtio port %q: %w", name, os.ErrNotExist)
}

// SerialListener serves one connection at a time over a virtio-serial port:
// Accept opens the port and returns it as a connection once the host end is
// connected; when that connection ends (the host went away), the next
// Accept reopens the port and waits for a host again.
type SerialListener struct {
	path   string
	free   chan struct{}
	closed chan struct{}
	once   sync.Once
	// waiting is the port Accept has open while it waits for a host;
	// Close closes it to end the wait.
	mu      sync.Mutex
	waiting *os.File
}

// ListenSerial returns a listener over the character device at path.
func ListenSerial(path string) *SerialListener {
	l := &SerialListener{path: path, free: make(chan struct{}, 1), closed: make(chan struct{})}
	l.free <- struct{}{}
	return l
}

// Accept waits until the previous connection is closed, then reopens the
// port and waits until the host end is connected.
func (l *SerialListener) Accept() (net.Conn, error) {
	select {
	case <-l.closed:
		return nil, net.ErrClosed
	case <-l.free:
	}
	f, err := os.OpenFile(l.path, os.O_RDWR, 0)
	if err != nil {
		l.free <- struct{}{}
		return nil, fmt.Errorf("open %s: %w", l.path, err)
	}
	if err := l.waitHost(f); err != nil {
		f.Close()
		l.free <- struct{}{}
		return nil, err
	}
	return &serialConn{File: f, release: func() { l.free <- struct{}{} }}, nil
}

// waitHost returns once the host end of the port f is connected. Until
// then the port polls POLLHUP and reads EOF at once; the guest kernel wakes
// the port's pollers when the host connects, and the port is writable
// from then on. A port that cannot be polled is taken as connected.
func (l *SerialListener) waitHost(f *os.File) error {
	l.mu.Lock()
	select {
	case <-l.closed:
		l.mu.Unlock()
		return net.ErrClosed
	default:
	}
	l.waiting = f
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.waiting = nil
		l.mu.Unlock()
	}()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("wait for the host on %s: %w", l.path, err)
	}
	var perr error
	err = rc.Write(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		for {
			_, perr = unix.Poll(fds, 0)
			if !errors.Is(perr, unix.EINTR) {
				break
			}
		}
		return perr != nil || fds[0].Revents&unix.POLLHUP == 0
	})
	select {
	case <-l.closed:
		return net.ErrClosed
	default:
	}
	if err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("wait for the host on %s: %w", l.path, err)
	}
	return nil
}

// Close stops Accept, also one waiting for a host.
func (l *SerialListener) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		close(l.closed)
		if l.waiting != nil {
			l.waiting.Close()
		}
	})
	return nil
}

// Addr names the port.
func (l *SerialListener) Addr() net.Addr { return serialAddr(l.path) }

type serialAddr string

func (a serialAddr) Network() string { return "virtio-serial" }
func (a serialAddr) String() string  { return string(a) }

// serialConn adapts the port's file to net.Conn.
type serialConn struct {
	*os.File
	once    sync.Once
	release func()
}

func (c *serialConn) Read(p []byte) (int, error) {
	n, err := c.File.Read(p)
	if n == 0 && errors.Is(err, io.EOF) {
		// The host end disconnected: a virtio port reads EOF until the
		// host reconnects, so end this connection and reopen later.
		return 0, io.EOF
	}
	return n, err
}

func (c *serialConn) Close() error {
	err := c.File.Close()
	c.once.Do(c.release)
	return err
}

func (c *serialConn) LocalAddr() net.Addr  { return serialAddr(c.Name()) }
func (c *serialConn) RemoteAddr() net.Addr { return serialAddr("host") }

// DrainingListener is a listener that can wait for its clients to hang up.
// A client hangs up once it has the replies it waited for, so a server that
// drains before it exits cuts no reply off. (ttrpc's Server.Shutdown waits
// for the replies too, but looks only every 200 ms.)
type DrainingListener struct {
	net.Listener
	mu   sync.Mutex
	open int
	// gone is closed while no accepted connection is open.
	gone chan struct{}
}

// NewDrainingListener tracks the connections l accepts.
func NewDrainingListener(l net.Listener) *DrainingListener {
	gone := make(chan struct{})
	close(gone)
	return &DrainingListener{Listener: l, gone: gone}
}

// Accept returns the next connection, counted until it is closed.
func (l *DrainingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open == 0 {
		l.gone = make(chan struct{})
	}
	l.open++
	return &drainingConn{Conn: c, l: l}, nil
}

func (l *DrainingListener) hungUp() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.open--
	if l.open == 0 {
		close(l.gone)
	}
}

// Drain stops accepting and waits until every accepted connection has been
// closed, or ctx ends.
func (l *DrainingListener) Drain(ctx context.Context) error {
	if err := l.Listener.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("drain %s: %w", l.Addr(), err)
	}
	l.mu.Lock()
	gone := l.gone
	l.mu.Unlock()
	select {
	case <-gone:
		return nil
	case <-ctx.Done():
		l.mu.Lock()
		defer l.mu.Unlock()
		return fmt.Errorf("drain %s: %d connection(s) still open: %w", l.Addr(), l.open, ctx.Err())
	}
}

type drainingConn struct {
	net.Conn
	once sync.Once
	l    *DrainingListener
}

func (c *drainingConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.l.hungUp)
	return err
}
