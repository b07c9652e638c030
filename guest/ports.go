package guest

import (
	"context"
	"errors"
	"net"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

// The guest ends of forwarded connections (the CRI's PortForward, relayed
// by the host's pod.PortForwarder): TCP connections to the VM's loopback,
// where every container listens, since they all share the VM's network.

// maxPorts bounds the connections open at once: a host that never closes
// its connections cannot take every descriptor of PID 1.
const maxPorts = 1024

// portDialTimeout bounds a connect to the guest's loopback, which answers
// at once unless the guest is starved.
const portDialTimeout = 10 * time.Second

// ports are the open forwarded connections, by the IDs the host knows them by.
type ports struct {
	mu    sync.Mutex
	next  uint32
	conns map[uint32]*portConn
}

// portConn is one connection; one reader and one writer at a time.
type portConn struct {
	conn    *net.TCPConn
	readMu  sync.Mutex
	writeMu sync.Mutex
}

// dialLoopback connects to port on the loopback, IPv4 first, then IPv6, as
// containerd does in the pod's network namespace for a runc pod.
func dialLoopback(ctx context.Context, port uint32) (*net.TCPConn, error) {
	ctx, cancel := context.WithTimeout(ctx, portDialTimeout)
	defer cancel()
	var d net.Dialer
	p := strconv.FormatUint(uint64(port), 10)
	c, err4 := d.DialContext(ctx, "tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c.(*net.TCPConn), nil
	}
	c, err6 := d.DialContext(ctx, "tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c.(*net.TCPConn), nil
	}
	return nil, errors.Join(err4, err6)
}

// OpenPort connects to a port of the guest's loopback and names the
// connection for the calls that follow.
func (s *Service) OpenPort(ctx context.Context, req *agentproto.OpenPortRequest) (*agentproto.OpenPortResponse, error) {
	if req.Port == 0 || req.Port > 65535 {
		return nil, status.Errorf(codes.InvalidArgument, "port %d: not a TCP port", req.Port)
	}
	// The loopback comes up in the boot-time setup.
	if err := s.cfg.Ready(ctx); err != nil {
		return nil, status.Errorf(codes.Unavailable, "guest setup: %v", err)
	}
	c, err := dialLoopback(ctx, req.Port)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "connect to port %d: %v", req.Port, err)
	}
	s.ports.mu.Lock()
	defer s.ports.mu.Unlock()
	if len(s.ports.conns) >= maxPorts {
		c.Close()
		return nil, status.Errorf(codes.ResourceExhausted, "%d forwarded connections are open", maxPorts)
	}
	if s.ports.conns == nil {
		s.ports.conns = map[uint32]*portConn{}
	}
	for {
		s.ports.next++
		if _, taken := s.ports.conns[s.ports.next]; !taken && s.ports.next != 0 {
			break
		}
	}
	s.ports.conns[s.ports.next] = &portConn{conn: c}
	return &agentproto.OpenPortResponse{Id: s.ports.next}, nil
}

func (s *Service) port(id uint32) (*portConn, error) {
	s.ports.mu.Lock()
	defer s.ports.mu.Unlock()
	pc, ok := s.ports.conns[id]
	if !ok {
		return nil, errNotFound("forwarded connection " + strconv.FormatUint(uint64(id), 10))
	}
	return pc, nil
}

// WritePort writes to the connection.
func (s *Service) WritePort(_ context.Context, req *agentproto.WritePortRequest) (*agentproto.WritePortResponse, error) {
	pc, err := s.port(req.Id)
	if err != nil {
		return nil, err
	}
	pc.writeMu.Lock()
	defer pc.writeMu.Unlock()
	n, err := pc.conn.Write(req.Data)
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "write: %v", err)
	}
	return &agentproto.WritePortResponse{Len: uint32(n)}, nil
}

// ReadPort returns the next chunk the connection received, or eof once the
// guest's end has closed it (or ClosePort has, under a pending read).
func (s *Service) ReadPort(_ context.Context, req *agentproto.ReadPortRequest) (*agentproto.ReadPortResponse, error) {
	pc, err := s.port(req.Id)
	if err != nil {
		return nil, err
	}
	data, eof, err := read(&pc.readMu, pc.conn, req.Max)
	if errors.Is(err, net.ErrClosed) {
		data, eof, err = nil, true, nil
	}
	if err != nil {
		return nil, status.Errorf(codes.Unavailable, "read: %v", err)
	}
	return &agentproto.ReadPortResponse{Data: data, Eof: eof}, nil
}

// ClosePortWrite half-closes the connection: the guest's end reads EOF.
func (s *Service) ClosePortWrite(_ context.Context, req *agentproto.PortRequest) (*agentproto.Empty, error) {
	pc, err := s.port(req.Id)
	if err != nil {
		return nil, err
	}
	pc.writeMu.Lock()
	defer pc.writeMu.Unlock()
	// ENOTCONN: the peer has reset the connection already.
	if err := pc.conn.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, unix.ENOTCONN) {
		return nil, status.Errorf(codes.Unavailable, "close write: %v", err)
	}
	return &agentproto.Empty{}, nil
}

// ClosePort closes the connection and forgets it; a read pending on it
// returns eof.
func (s *Service) ClosePort(_ context.Context, req *agentproto.PortRequest) (*agentproto.Empty, error) {
	s.ports.mu.Lock()
	pc, ok := s.ports.conns[req.Id]
	delete(s.ports.conns, req.Id)
	s.ports.mu.Unlock()
	if !ok {
		return nil, errNotFound("forwarded connection " + strconv.FormatUint(uint64(req.Id), 10))
	}
	pc.conn.Close()
	return &agentproto.Empty{}, nil
}
