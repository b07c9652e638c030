package pod

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/ttrpc"
	"github.com/vishvananda/netlink"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/guest"
)

// guestAgent serves the real agent service on a unix socket and returns a
// client: the guest's loopback is this host's.
func guestAgent(t *testing.T) *agentproto.Client {
	t.Helper()
	srv, err := ttrpc.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	agentproto.RegisterAgentService(srv, guest.NewService(guest.Config{}))
	path := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), l) }()
	t.Cleanup(func() { srv.Close() })
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c := agentproto.NewClient(conn)
	t.Cleanup(func() { c.Close() })
	return c
}

// relayTo starts a relay whose every connection goes to the guest's port
// (no REDIRECT rule here: the test dials the relay's listener) and returns
// the listener's address.
func relayTo(t *testing.T, port uint32) (*portRelay, string) {
	t.Helper()
	r := newPortRelay(guestAgent(t), slog.New(slog.DiscardHandler))
	r.target = func(*net.TCPConn) (uint32, error) { return port, nil }
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.serve(l)
	t.Cleanup(r.close)
	return r, l.Addr().String()
}

// guestServer listens on the loopback and answers each connection with
// handle; it returns the port.
func guestServer(t *testing.T, handle func(net.Conn)) uint32 {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

func dial(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// A megabyte each way through the relay and the agent, with half-closes
// both ways: the guest's server reads to the caller's half-close, then
// answers and closes.
func TestPortRelayCopiesBothWaysWithHalfClose(t *testing.T) {
	port := guestServer(t, func(c net.Conn) {
		b, _ := io.ReadAll(c)
		slices.Reverse(b)
		_, _ = c.Write(b)
	})
	_, addr := relayTo(t, port)
	sent := make([]byte, 1<<20)
	_, _ = rand.Read(sent)
	c := dial(t, addr)
	go func() {
		_, _ = c.Write(sent)
		_ = c.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	slices.Reverse(sent)
	if !bytes.Equal(got, sent) {
		t.Fatalf("got %d bytes back, not the %d sent reversed", len(got), len(sent))
	}
}

// A port nothing listens on in the guest: the connection is reset at once,
// not left hanging.
func TestPortRelayResetsWhatTheGuestRefuses(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := uint32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	_, addr := relayTo(t, free)
	c, err := net.Dial("tcp4", addr)
	if err == nil {
		// The reset may also come before connect has looked.
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		var n int
		n, err = c.Read(make([]byte, 1))
		if n != 0 {
			t.Fatalf("read %d bytes from a refused port", n)
		}
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("a refused port: %v, want a reset", err)
	}
}

// close ends the relayed connections that are still open, and their guest
// ends, and returns.
func TestPortRelayCloseEndsConnections(t *testing.T) {
	closed := make(chan struct{})
	port := guestServer(t, func(c net.Conn) {
		_, _ = c.Write([]byte("hi"))
		_, _ = io.Copy(io.Discard, c) // until the relay closes the guest's end
		close(closed)
	})
	r, addr := relayTo(t, port)
	c := dial(t, addr)
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "hi" {
		t.Fatalf("greeting: %q, %v", b, err)
	}
	done := make(chan struct{})
	go func() { r.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("close still waits")
	}
	if _, err := c.Read(b); err == nil {
		t.Error("the caller's connection is still open")
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the guest's end is still open")
	}
}

// A connection that no REDIRECT rule sent (conntrack has no NAT for it)
// asks for the port it was made to: the listener's.
func TestOriginalPortOfADirectConnection(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := dial(t, l.Addr().String())
	s, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, err := originalPort(s.(*net.TCPConn))
	if err != nil {
		t.Fatalf("originalPort: %v", err)
	}
	if want := uint32(l.Addr().(*net.TCPAddr).Port); got != want {
		t.Errorf("originalPort = %d, want %d (client %s)", got, want, c.LocalAddr())
	}
}

// The rules, as iptables gets them.
func TestNATRuleArgs(t *testing.T) {
	r := natRule{iptables: "ip6tables", dest: "::1", toPort: 40123}
	got := strings.Join(r.args("-D"), " ")
	want := `-w 5 -t nat -D OUTPUT -o lo -p tcp -d ::1 -m comment --comment hull port-forward -j REDIRECT --to-ports 40123`
	if got != want {
		t.Errorf("args:\n got %s\nwant %s", got, want)
	}
}

// In a network namespace of its own, with the real rules: a connection to
// localhost:PORT there reaches PORT of the "guest" (this host's loopback,
// which the agent dials), over IPv4 and IPv6; Stop takes the rules away.
func TestPortForwarderInNetNS(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and its netfilter rules")
	}
	if _, err := exec.LookPath("iptables"); err != nil {
		t.Skip("iptables missing")
	}
	ns := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNetNS(ns) })
	if err := InNetNS(ns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	port := guestServer(t, func(c net.Conn) { _, _ = c.Write([]byte("from the guest")) })
	f, err := StartPortForwarder(ns, guestAgent(t), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			_ = f.Stop()
		}
	})
	// The guest's server is on 127.0.0.1, which the agent dials first,
	// whichever loopback the caller came on.
	for _, addr := range []string{"127.0.0.1", "::1"} {
		if !slices.ContainsFunc(f.rules, func(r natRule) bool { return r.dest == addr }) {
			t.Logf("no rule for %s (no such loopback address here)", addr)
			continue
		}
		var got []byte
		err := InNetNS(ns, func() error {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(addr, strconv.Itoa(int(port))), 10*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			got, err = io.ReadAll(c)
			return err
		})
		if err != nil || string(got) != "from the guest" {
			t.Errorf("[%s]:%d in the namespace: %q, %v", addr, port, got, err)
		}
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	stopped = true
	for _, cmd := range []string{"iptables", "ip6tables"} {
		var out []byte
		_ = InNetNS(ns, func() error {
			out, err = exec.Command(cmd, "-t", "nat", "-S", "OUTPUT").CombinedOutput()
			return err
		})
		if strings.Contains(string(out), "hull") {
			t.Errorf("%s rules left after Stop:\n%s", cmd, out)
		}
	}
}

// A namespace whose loopback is down has no localhost to forward: no
// forwarder, no error, no rule.
func TestPortForwarderWithoutLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace")
	}
	ns := filepath.Join(t.TempDir(), "netns")
	if err := CreateNetNS(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = RemoveNetNS(ns) })
	f, err := StartPortForwarder(ns, nil, slog.New(slog.DiscardHandler))
	if f != nil || err != nil {
		t.Fatalf("StartPortForwarder = %v, %v; want nil, nil", f, err)
	}
	if err := f.Stop(); err != nil {
		t.Fatalf("Stop of none: %v", err)
	}
}
