package pod

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
)

// PortForwarder makes localhost:PORT in a sandbox's network namespace on
// the host reach PORT on the guest's loopback, where the sandbox's
// containers listen. That is what the CRI's PortForward dials: containerd
// and CRI-O enter the pod's network namespace on the host and connect to
// localhost:PORT (tcp4, then tcp6), where with the tc mirror nothing
// listens.
//
// In the namespace, a netfilter rule per loopback address
//
//	-t nat -I OUTPUT -o lo -p tcp -d 127.0.0.1 -j REDIRECT --to-ports FWD
//
// sends every TCP connection to the loopback to one listener on FWD, which
// this process opened in the namespace; the port it was made to
// (SO_ORIGINAL_DST) names the guest's port, and the bytes go through the
// agent (OpenPort, WritePort, ReadPort, ClosePortWrite, ClosePort). FWD is
// an ephemeral port the kernel picks: nothing else listens in that
// namespace, and a connection made to FWD itself is forwarded to the
// guest's FWD like any other, so no port of the pod is shadowed.
type PortForwarder struct {
	netns string
	rules []natRule
	relay *portRelay
}

// loopbacks are the addresses forwarded and the iptables of their family.
var loopbacks = []struct{ network, addr, iptables string }{
	{"tcp4", "127.0.0.1", "iptables"},
	{"tcp6", "::1", "ip6tables"},
}

// StartPortForwarder forwards the loopback of the network namespace at
// netns to the guest behind agent, on IPv4 and, where the namespace has
// ::1, IPv6. A namespace whose lo is down (one that hull made itself) has
// no localhost to forward: nil, and no error. It fails when neither
// address can be forwarded.
func StartPortForwarder(netns string, agent agentproto.AgentService, log *slog.Logger) (*PortForwarder, error) {
	var up bool
	if err := InNetNS(netns, func() error {
		lo, err := netlink.LinkByName("lo")
		up = err == nil && lo.Attrs().Flags&net.FlagUp != 0
		return nil
	}); err != nil {
		return nil, fmt.Errorf("port forward in %s: %w", netns, err)
	}
	if !up {
		log.Debug("port forward: loopback down", "netns", netns)
		return nil, nil
	}
	f := &PortForwarder{netns: netns, relay: newPortRelay(agent, log)}
	var errs []error
	for _, lo := range loopbacks {
		err := InNetNS(netns, func() error {
			l, err := net.Listen(lo.network, net.JoinHostPort(lo.addr, "0"))
			if err != nil {
				return err
			}
			r := natRule{iptables: lo.iptables, dest: lo.addr, toPort: l.Addr().(*net.TCPAddr).Port}
			// The command runs in the namespace: this thread's.
			if err := r.run("-I"); err != nil {
				l.Close()
				return err
			}
			f.rules = append(f.rules, r)
			f.relay.serve(l)
			return nil
		})
		if errors.Is(err, unix.EADDRNOTAVAIL) {
			// No such loopback address (IPv6 off): nobody can dial it
			// there either.
			log.Debug("port forward: no loopback address", "netns", netns, "addr", lo.addr)
			continue
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", lo.addr, err))
		}
	}
	if len(f.rules) == 0 {
		f.relay.close()
		if len(errs) == 0 {
			errs = append(errs, errors.New("no loopback address"))
		}
		return nil, fmt.Errorf("port forward in %s: %w", netns, errors.Join(errs...))
	}
	if len(errs) > 0 {
		log.Warn("port forward on some loopback addresses only", "netns", netns, "err", errors.Join(errs...))
	}
	return f, nil
}

// Stop ends the forwarded connections and removes the rules; a namespace
// already gone took them along.
func (f *PortForwarder) Stop() error {
	if f == nil {
		return nil
	}
	f.relay.close()
	var errs []error
	err := InNetNS(f.netns, func() error {
		for _, r := range f.rules {
			errs = append(errs, r.run("-D"))
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("stop port forward in %s: %w", f.netns, err)
	}
	return nil
}

// natRule redirects the TCP connections made to dest on lo to toPort.
type natRule struct {
	iptables string
	dest     string
	toPort   int
}

// args is the iptables command line that adds (-I) or deletes (-D) it.
func (r natRule) args(op string) []string {
	return []string{"-w", "5", "-t", "nat", op, "OUTPUT", "-o", "lo", "-p", "tcp", "-d", r.dest,
		"-m", "comment", "--comment", "hull port-forward",
		"-j", "REDIRECT", "--to-ports", strconv.Itoa(r.toPort)}
}

func (r natRule) run(op string) error {
	out, err := exec.Command(r.iptables, r.args(op)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", r.iptables, strings.Join(r.args(op), " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Bounds of the agent calls a forwarded connection makes besides its
// reads and writes, which wait on the two ends' programs.
const (
	openPortTimeout  = 30 * time.Second
	closePortTimeout = 5 * time.Second
)

// portRelay relays each connection accepted on its listeners to a port of
// the guest: the one target says.
type portRelay struct {
	agent  agentproto.AgentService
	log    *slog.Logger
	target func(*net.TCPConn) (uint32, error)
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	ls     []net.Listener
	conns  map[*net.TCPConn]struct{}
	closed bool
	wg     sync.WaitGroup
}

func newPortRelay(agent agentproto.AgentService, log *slog.Logger) *portRelay {
	ctx, cancel := context.WithCancel(context.Background())
	return &portRelay{agent: agent, log: log, target: originalPort, ctx: ctx, cancel: cancel, conns: map[*net.TCPConn]struct{}{}}
}

// serve relays the connections l accepts until close.
func (r *portRelay) serve(l net.Listener) {
	r.mu.Lock()
	r.ls = append(r.ls, l)
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				// Out of descriptors, say: net/http's pause, then on.
				r.log.Warn("port forward: accept", "err", err)
				time.Sleep(100 * time.Millisecond)
				continue
			}
			tc := c.(*net.TCPConn)
			if !r.track(tc) {
				tc.Close()
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				defer r.untrack(tc)
				r.relay(tc)
			}()
		}
	}()
}

func (r *portRelay) track(c *net.TCPConn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *portRelay) untrack(c *net.TCPConn) {
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// close stops accepting, ends every relayed connection and waits for them.
// Each closes its guest end as its host end fails, which ends the reads
// pending in the guest; calls still waiting after closePortTimeout (a write
// the guest's program does not read, say) are cancelled.
func (r *portRelay) close() {
	r.mu.Lock()
	r.closed = true
	for _, l := range r.ls {
		l.Close()
	}
	for c := range r.conns {
		c.Close()
	}
	r.mu.Unlock()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(closePortTimeout):
	}
	r.cancel()
	<-done
}

// relay copies one connection to and from the guest's port until both
// directions have ended, or one failed. A port the guest cannot connect to
// resets the connection: the caller (containerd) already has it, so a
// refusal cannot reach it as one, but it fails at once instead of hanging.
func (r *portRelay) relay(c *net.TCPConn) {
	defer c.Close()
	port, err := r.target(c)
	if err != nil {
		r.log.Warn("port forward: the port asked for", "err", err)
		_ = c.SetLinger(0)
		return
	}
	octx, cancel := context.WithTimeout(r.ctx, openPortTimeout)
	open, err := r.agent.OpenPort(octx, &agentproto.OpenPortRequest{Port: port})
	cancel()
	if err != nil {
		r.log.Debug("port forward: guest port not reached", "port", port, "err", err)
		_ = c.SetLinger(0)
		return
	}
	id := open.Id
	var guestOnce sync.Once
	closeGuest := func() {
		guestOnce.Do(func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), closePortTimeout)
			defer cancel()
			_, _ = r.agent.ClosePort(cctx, &agentproto.PortRequest{Id: id})
		})
	}
	// abort ends both ends at once: either direction failed.
	abort := func() {
		_ = c.SetLinger(0)
		c.Close()
		closeGuest()
	}
	fromGuest := make(chan struct{})
	go func() {
		defer close(fromGuest)
		r.fromGuest(id, c, abort)
	}()
	r.toGuest(id, c, abort)
	<-fromGuest
	closeGuest()
}

// toGuest copies what the connection receives to the guest, then
// half-closes the guest's end.
func (r *portRelay) toGuest(id uint32, c *net.TCPConn, abort func()) {
	buf := make([]byte, 32<<10)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := r.agent.WritePort(r.ctx, &agentproto.WritePortRequest{Id: id, Data: buf[:n]}); werr != nil {
				abort()
				return
			}
		}
		if errors.Is(err, io.EOF) {
			if _, cerr := r.agent.ClosePortWrite(r.ctx, &agentproto.PortRequest{Id: id}); cerr != nil {
				abort()
			}
			return
		}
		if err != nil {
			abort()
			return
		}
	}
}

// fromGuest copies what the guest's end sends to the connection, then
// half-closes it.
func (r *portRelay) fromGuest(id uint32, c *net.TCPConn, abort func()) {
	req := &agentproto.ReadPortRequest{Id: id, Max: 64 << 10}
	for {
		resp, err := r.agent.ReadPort(r.ctx, req)
		if err != nil {
			abort()
			return
		}
		if resp.Eof {
			_ = c.CloseWrite()
			return
		}
		if _, err := c.Write(resp.Data); err != nil {
			abort()
			return
		}
	}
}

// ip6tSOOriginalDst is IP6T_SO_ORIGINAL_DST of linux/netfilter_ipv6/ip6_tables.h,
// which x/sys/unix lacks.
const ip6tSOOriginalDst = 80

// originalPort is the port a connection was made to before the REDIRECT
// rule sent it to the listener (netfilter's SO_ORIGINAL_DST), or the
// listener's own for one that conntrack does not know (made to it directly).
func originalPort(c *net.TCPConn) (uint32, error) {
	local := c.LocalAddr().(*net.TCPAddr)
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var port uint16
	var serr error
	err = raw.Control(func(fd uintptr) {
		if local.IP.To4() != nil {
			// A struct sockaddr_in comes back: family, port (big
			// endian), address; IPv6Mreq is the 16-byte buffer that
			// x/sys/unix offers for it.
			var sa *unix.IPv6Mreq
			if sa, serr = unix.GetsockoptIPv6Mreq(int(fd), unix.SOL_IP, unix.SO_ORIGINAL_DST); serr == nil {
				port = binary.BigEndian.Uint16(sa.Multiaddr[2:4])
			}
			return
		}
		var mi *unix.IPv6MTUInfo // struct sockaddr_in6 and a little more
		if mi, serr = unix.GetsockoptIPv6MTUInfo(int(fd), unix.SOL_IPV6, ip6tSOOriginalDst); serr == nil {
			port = binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&mi.Addr.Port))[:])
		}
	})
	if err != nil {
		return 0, err
	}
	if errors.Is(serr, unix.ENOENT) {
		return uint32(local.Port), nil
	}
	if serr != nil {
		return 0, fmt.Errorf("original destination: %w", serr)
	}
	return uint32(port), nil
}
