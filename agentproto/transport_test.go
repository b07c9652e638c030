package agentproto

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeAgent answers the few RPCs the tests call; any other one would panic
// on the nil embedded interface.
type fakeAgent struct {
	AgentService
}

func (fakeAgent) Health(context.Context, *HealthRequest) (*HealthResponse, error) {
	return &HealthResponse{Version: "1.2.3-test"}, nil
}

func (fakeAgent) WaitProcess(_ context.Context, req *ProcessRequest) (*WaitProcessResponse, error) {
	if req.ContainerId != "c1" {
		return nil, status.Errorf(codes.NotFound, "container %s not found", req.ContainerId)
	}
	if req.ExecId == "killed" {
		return &WaitProcessResponse{Status: 137}, nil
	}
	return &WaitProcessResponse{Status: 3}, nil
}

func (fakeAgent) StartContainer(_ context.Context, req *ContainerRequest) (*Empty, error) {
	// A plain error, without a status code.
	return nil, errors.New("runc start " + req.ContainerId + ": boom")
}

// serveFake serves fakeAgent on a unix socket and returns a client on it.
func serveFake(t *testing.T) (*Client, *ttrpc.Server) {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	RegisterAgentService(srv, fakeAgent{})
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "agent.sock"))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(context.Background(), l)
	}()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := DialUnix(ctx, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c, srv
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestClientRoundTrip(t *testing.T) {
	c, _ := serveFake(t)
	ctx := testContext(t)

	h, err := c.Health(ctx, &HealthRequest{})
	if err != nil {
		t.Fatalf("Health: %v", err)
	}
	if h.Version != "1.2.3-test" {
		t.Errorf("Health version = %q, want 1.2.3-test", h.Version)
	}

	for _, tt := range []struct {
		exec string
		want int32
	}{{"", 3}, {"killed", 137}} {
		w, err := c.WaitProcess(ctx, &ProcessRequest{ContainerId: "c1", ExecId: tt.exec})
		if err != nil {
			t.Fatalf("WaitProcess(c1, %q): %v", tt.exec, err)
		}
		if w.Status != tt.want {
			t.Errorf("WaitProcess(c1, %q) status = %d, want %d", tt.exec, w.Status, tt.want)
		}
	}
}

func TestClientErrorCodes(t *testing.T) {
	c, _ := serveFake(t)
	ctx := testContext(t)

	_, err := c.WaitProcess(ctx, &ProcessRequest{ContainerId: "nope"})
	if got := status.Code(err); got != codes.NotFound {
		t.Errorf("WaitProcess(unknown container) code = %v (err %v), want NotFound", got, err)
	}
	if st, _ := status.FromError(err); st.Message() != "container nope not found" {
		t.Errorf("status message = %q, want the server's", st.Message())
	}

	_, err = c.StartContainer(ctx, &ContainerRequest{ContainerId: "c1"})
	if err == nil {
		t.Fatal("StartContainer succeeded, want the fake's error")
	}
	if got := status.Code(err); got != codes.Unknown {
		t.Errorf("plain error crossed with code %v, want Unknown", got)
	}
}

func TestClientDoneWhenServerCloses(t *testing.T) {
	c, srv := serveFake(t)
	ctx := testContext(t)
	// One call first, so the server has accepted the connection.
	if _, err := c.Health(ctx, &HealthRequest{}); err != nil {
		t.Fatalf("Health: %v", err)
	}
	select {
	case <-c.Done():
		t.Fatal("Done closed while the connection is up")
	default:
	}
	srv.Close()
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the server closed the connection")
	}
	if _, err := c.Health(ctx, &HealthRequest{}); !errors.Is(err, ttrpc.ErrClosed) {
		t.Errorf("Health after close = %v, want ttrpc.ErrClosed", err)
	}
}

func TestClientDoneWhenClosed(t *testing.T) {
	c, _ := serveFake(t)
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after Close")
	}
}

func TestDialUnixWaitsForSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "late.sock")
	ctx := testContext(t)
	accepted := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		l, err := net.Listen("unix", path)
		if err != nil {
			accepted <- err
			return
		}
		defer l.Close()
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	conn, err := DialUnix(ctx, path)
	if err != nil {
		t.Fatalf("DialUnix: %v", err)
	}
	conn.Close()
	if err := <-accepted; err != nil {
		t.Fatal(err)
	}
}

func TestDialUnixGivesUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	path := filepath.Join(t.TempDir(), "never.sock")
	if conn, err := DialUnix(ctx, path); err == nil {
		conn.Close()
		t.Fatal("DialUnix succeeded without a listener")
	}
}

// fakeSysfs builds sysRoot/sys/class/virtio-ports with one directory per
// entry, each holding a name file with the given content ("" for none).
func fakeSysfs(t *testing.T, ports map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for dev, name := range ports {
		dir := filepath.Join(root, "sys/class/virtio-ports", dev)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if name == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "name"), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func TestFindSerialPort(t *testing.T) {
	root := fakeSysfs(t, map[string]string{
		"vport0p0": "",
		"vport0p1": "org.qemu.guest_agent.0\n",
		"vport1p1": "hull.agent\n",
		"vport1p2": "hull.agent.other\n",
	})
	got, err := FindSerialPort(root, "hull.agent")
	if err != nil {
		t.Fatalf("FindSerialPort: %v", err)
	}
	if want := filepath.Join(root, "dev", "vport1p1"); got != want {
		t.Errorf("FindSerialPort = %q, want %q", got, want)
	}

	if got, err := FindSerialPort(root, "missing"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FindSerialPort(missing) = %q, %v; want fs.ErrNotExist", got, err)
	}
	if got, err := FindSerialPort(t.TempDir(), "hull.agent"); err == nil {
		t.Errorf("FindSerialPort without virtio-ports = %q, want an error", got)
	}
}

func TestSerialListener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vport1p1")
	l := ListenSerial(path)
	defer l.Close()

	// A port that cannot be opened fails Accept but does not wedge it.
	if c, err := l.Accept(); err == nil {
		c.Close()
		t.Fatal("Accept succeeded on a missing port")
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c1, err := l.Accept()
	if err != nil {
		t.Fatalf("Accept: %v", err)
	}
	if got := l.Addr().String(); got != path {
		t.Errorf("Addr = %q, want %q", got, path)
	}

	// One connection at a time: the next Accept waits for c1 to close.
	next := make(chan net.Conn, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			t.Errorf("second Accept: %v", err)
		}
		next <- c
	}()
	select {
	case c := <-next:
		c.Close()
		t.Fatal("second Accept returned while the first connection is open")
	case <-time.After(200 * time.Millisecond):
	}
	c1.Close()
	c1.Close() // a second Close must not release the port twice
	var c2 net.Conn
	select {
	case c2 = <-next:
	case <-time.After(5 * time.Second):
		t.Fatal("second Accept did not return after the first connection closed")
	}
	if c2 == nil {
		t.FailNow()
	}

	// Close ends a waiting Accept.
	closed := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err == nil {
			c.Close()
		}
		closed <- err
	}()
	l.Close()
	select {
	case err := <-closed:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Accept after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	c2.Close()
}

// openPTY returns a pty's master and the path of its slave. A master polls
// POLLHUP while its slave is closed, as a virtio port does while its host
// end is not connected, and is woken when the slave writes.
func openPTY(t *testing.T) (*os.File, string) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	rc, err := m.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		if ierr = unix.IoctlSetPointerInt(int(fd), unix.TIOCSPTLCK, 0); ierr == nil {
			n, ierr = unix.IoctlGetInt(int(fd), unix.TIOCGPTN)
		}
	}); err != nil || ierr != nil {
		t.Fatalf("unlock pty: %v %v", err, ierr)
	}
	return m, fmt.Sprintf("/dev/pts/%d", n)
}

// waitHost holds Accept until the host end is connected, and no longer.
func TestSerialListenerWaitsForHost(t *testing.T) {
	master, slave := openPTY(t)
	// The slave opened once and closed: the master now polls POLLHUP.
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	l := ListenSerial("unused")
	waited := make(chan error, 1)
	go func() { waited <- l.waitHost(master) }()
	select {
	case err := <-waited:
		t.Fatalf("waitHost returned (%v) with no host connected", err)
	case <-time.After(200 * time.Millisecond):
	}
	// The host connects and sends its first request.
	s, err = os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("waitHost = %v, want nil once the host is there", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitHost still waiting after the host connected")
	}
}

// Close ends a wait for the host.
func TestSerialListenerCloseEndsWaitForHost(t *testing.T) {
	master, slave := openPTY(t)
	s, err := os.OpenFile(slave, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	l := ListenSerial("unused")
	waited := make(chan error, 1)
	go func() { waited <- l.waitHost(master) }()
	// Most likely waitHost is waiting by now; before or during, Close ends it.
	time.Sleep(50 * time.Millisecond)
	l.Close()
	select {
	case err := <-waited:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("waitHost after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waitHost still waiting after Close")
	}
}

// Drain returns once every client has hung up, not before, and gives up
// when its context ends.
func TestDrainingListenerWaitsForHangups(t *testing.T) {
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	RegisterAgentService(srv, fakeAgent{})
	t.Cleanup(func() { srv.Close() })
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	dl := NewDrainingListener(l)
	go func() { _ = srv.Serve(context.Background(), dl) }()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	dial := func() *Client {
		conn, err := DialUnix(ctx, path)
		if err != nil {
			t.Fatal(err)
		}
		c := NewClient(conn)
		if _, err := c.Health(ctx, &HealthRequest{}); err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := dial(), dial()

	short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancelShort()
	if err := dl.Drain(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Drain with two clients connected = %v, want the deadline", err)
	}
	if _, err := net.Dial("unix", path); err == nil {
		t.Error("a drained listener still accepts")
	}
	drained := make(chan error, 1)
	go func() { drained <- dl.Drain(ctx) }()
	a.Close()
	// b still has its connection: the drain must not be over.
	if _, err := b.Health(ctx, &HealthRequest{}); err != nil {
		t.Errorf("a call of a client still connected during the drain: %v", err)
	}
	select {
	case err := <-drained:
		t.Fatalf("Drain returned (%v) while a client was connected", err)
	default:
	}
	b.Close()
	if err := <-drained; err != nil {
		t.Errorf("Drain after every client hung up = %v", err)
	}
}
