package guest

import (
	"context"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

// listenLoopback serves one connection on addr ("127.0.0.1:0", "[::1]:0")
// with handle and returns the port.
func listenLoopback(t *testing.T, network, addr string, handle func(net.Conn)) uint32 {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Skipf("listen on %s: %v", addr, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		handle(c)
	}()
	return uint32(l.Addr().(*net.TCPAddr).Port)
}

// readAll reads a forwarded connection to its eof.
func readAll(t *testing.T, c agentproto.AgentService, id uint32) string {
	t.Helper()
	var out []byte
	for {
		resp, err := c.ReadPort(context.Background(), &agentproto.ReadPortRequest{Id: id, Max: 4})
		if err != nil {
			t.Fatalf("ReadPort: %v", err)
		}
		if resp.Eof {
			return string(out)
		}
		out = append(out, resp.Data...)
	}
}

// A forwarded connection through the agent protocol: the host writes,
// half-closes, and reads the guest server's answer to its eof, while a
// read is pending on the same agent connection.
func TestPortForwardedConnection(t *testing.T) {
	port := listenLoopback(t, "tcp4", "127.0.0.1:0", func(c net.Conn) {
		b, _ := io.ReadAll(c) // to the host's half-close
		c.Write([]byte("got " + string(b)))
	})
	c, _ := serveAgent(t, time.Second)
	ctx := context.Background()
	open, err := c.OpenPort(ctx, &agentproto.OpenPortRequest{Port: port})
	if err != nil {
		t.Fatalf("OpenPort: %v", err)
	}
	answer := make(chan string, 1)
	go func() { answer <- readAll(t, c, open.Id) }()
	for _, chunk := range []string{"hello ", "guest"} {
		resp, err := c.WritePort(ctx, &agentproto.WritePortRequest{Id: open.Id, Data: []byte(chunk)})
		if err != nil || resp.Len != uint32(len(chunk)) {
			t.Fatalf("WritePort(%q) = %v, %v", chunk, resp, err)
		}
	}
	if _, err := c.ClosePortWrite(ctx, &agentproto.PortRequest{Id: open.Id}); err != nil {
		t.Fatalf("ClosePortWrite: %v", err)
	}
	select {
	case got := <-answer:
		if got != "got hello guest" {
			t.Errorf("answer %q", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
	}
	if _, err := c.ClosePort(ctx, &agentproto.PortRequest{Id: open.Id}); err != nil {
		t.Fatalf("ClosePort: %v", err)
	}
	_, err = c.ReadPort(ctx, &agentproto.ReadPortRequest{Id: open.Id})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ReadPort after ClosePort: %v, want NotFound", err)
	}
}

// A port nobody listens on, or no port at all, fails at once.
func TestOpenPortErrors(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := uint32(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	svc := NewService(Config{})
	ctx := context.Background()
	_, err = svc.OpenPort(ctx, &agentproto.OpenPortRequest{Port: free})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("OpenPort of a closed port: %v, want Unavailable", err)
	}
	for _, p := range []uint32{0, 65536} {
		if _, err := svc.OpenPort(ctx, &agentproto.OpenPortRequest{Port: p}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("OpenPort(%d): %v, want InvalidArgument", p, err)
		}
	}
	if _, err := svc.WritePort(ctx, &agentproto.WritePortRequest{Id: 7}); status.Code(err) != codes.NotFound {
		t.Errorf("WritePort of an unknown connection: %v", err)
	}
}

// A server that listens on ::1 only is reached, as containerd reaches it in
// a runc pod.
func TestOpenPortIPv6(t *testing.T) {
	port := listenLoopback(t, "tcp6", "[::1]:0", func(c net.Conn) { c.Write([]byte("six")) })
	if l, err := net.Listen("tcp4", "127.0.0.1:"+strconv.Itoa(int(port))); err == nil {
		l.Close() // the IPv4 port is free: the dial falls back to ::1
	} else {
		t.Skipf("127.0.0.1:%d is taken", port)
	}
	svc := NewService(Config{})
	open, err := svc.OpenPort(context.Background(), &agentproto.OpenPortRequest{Port: port})
	if err != nil {
		t.Fatalf("OpenPort: %v", err)
	}
	if got := readAll(t, svc, open.Id); got != "six" {
		t.Errorf("read %q", got)
	}
}

// ClosePort ends a read pending on the connection, with eof.
func TestClosePortEndsPendingRead(t *testing.T) {
	hold := make(chan struct{})
	t.Cleanup(func() { close(hold) })
	port := listenLoopback(t, "tcp4", "127.0.0.1:0", func(net.Conn) { <-hold })
	svc := NewService(Config{})
	ctx := context.Background()
	open, err := svc.OpenPort(ctx, &agentproto.OpenPortRequest{Port: port})
	if err != nil {
		t.Fatalf("OpenPort: %v", err)
	}
	type result struct {
		resp *agentproto.ReadPortResponse
		err  error
	}
	read := make(chan result, 1)
	go func() {
		resp, err := svc.ReadPort(ctx, &agentproto.ReadPortRequest{Id: open.Id})
		read <- result{resp, err}
	}()
	time.Sleep(50 * time.Millisecond) // the read is pending or not yet; eof either way
	if _, err := svc.ClosePort(ctx, &agentproto.PortRequest{Id: open.Id}); err != nil {
		t.Fatalf("ClosePort: %v", err)
	}
	select {
	case r := <-read:
		if r.err != nil && status.Code(r.err) != codes.NotFound {
			t.Errorf("pending read: %v", r.err)
		}
		if r.err == nil && !r.resp.Eof {
			t.Errorf("pending read: %v, want eof", r.resp)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the pending read still blocks")
	}
}
