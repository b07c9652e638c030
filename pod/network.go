package pod

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/hypervisor"
)

// Endpoint is one interface of the sandbox's network namespace mirrored
// into the VM: the namespace's veth and a tap, joined by tc ingress +
// mirred redirects both ways (Kata's tcfilter model). The guest NIC takes
// the veth's MAC; the IPs stay on the veth.
type Endpoint struct {
	Veth    string
	Tap     string
	MAC     string
	MTU     int
	Addrs   []*agentproto.IPAddress
	tapFile *os.File
}

// Network is what StartSandbox mirrored into the VM.
type Network struct {
	NetNS     string
	Endpoints []Endpoint
	Routes    []*agentproto.Route
}

// InNetNS runs f on an OS thread that has joined the network namespace at
// path, then returns the thread to where it was.
func InNetNS(path string, f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		return fmt.Errorf("enter netns %s: %w", path, err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the wrong namespace: keep it locked so
		// the runtime retires it instead of reusing it.
		runtime.LockOSThread()
		return fmt.Errorf("leave netns %s: %w", path, err)
	}
	return ferr
}

// CreateNetNS makes a new network namespace and pins it with a bind mount
// at path.
func CreateNetNS(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create netns: %w", err)
	}
	f.Close()
	err = inNewNetNS(func() error {
		src := "/proc/self/task/" + strconv.Itoa(unix.Gettid()) + "/ns/net"
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("pin netns at %s: %w", path, err)
		}
		return nil
	})
	if err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// inNewNetNS runs f on an OS thread in a new network namespace, then
// returns the thread to where it was. A thread left in the new namespace
// would be the process's main thread at times, which the Go runtime keeps
// when its goroutine ends: /proc/self/ns/net would name the new namespace
// from then on, and IsHostNetNS take it for the host's.
func inNewNetNS(f func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return fmt.Errorf("current netns: %w", err)
	}
	defer orig.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare netns: %w", err)
	}
	ferr := f()
	if err := netns.Set(orig); err != nil {
		// Stuck in the new namespace: keep the thread locked so the
		// runtime retires it instead of reusing it.
		runtime.LockOSThread()
		return fmt.Errorf("leave new netns: %w", err)
	}
	return ferr
}

// RemoveNetNS unpins a namespace made by CreateNetNS.
func RemoveNetNS(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// IsHostNetNS reports whether path names the network namespace hull itself
// runs in: the host's. Mirroring it would hand the host's own interfaces to
// a VM.
func IsHostNetNS(path string) bool {
	var a, b unix.Stat_t
	if unix.Stat(path, &a) != nil || unix.Stat("/proc/self/ns/net", &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// mirrored link types: what CNI plugins and docker put in a namespace.
var mirrored = map[string]bool{"veth": true, "macvlan": true, "ipvlan": true, "macvtap": false}

// SetupNetwork mirrors every veth-like interface of the namespace at nsPath
// into taps the VM will use, and collects the addresses and routes the guest
// must take over. On error nothing it made is left.
func SetupNetwork(nsPath string) (n *Network, err error) {
	if IsHostNetNS(nsPath) {
		return nil, fmt.Errorf("network of %s: it is the host's network namespace; refusing to hand its interfaces to a VM", nsPath)
	}
	n = &Network{NetNS: nsPath}
	err = InNetNS(nsPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			a := l.Attrs()
			if !mirrored[l.Type()] || a.Flags&net.FlagLoopback != 0 {
				continue
			}
			ep, err := mirror(l, len(n.Endpoints))
			if err != nil {
				return fmt.Errorf("mirror %s: %w", a.Name, err)
			}
			n.Endpoints = append(n.Endpoints, ep)
			routes, err := netlink.RouteList(l, netlink.FAMILY_ALL)
			if err != nil {
				return err
			}
			for _, r := range routes {
				if r.Gw == nil {
					continue // the guest derives on-link routes from its addresses
				}
				gr := &agentproto.Route{Gateway: r.Gw.String(), Device: guestNIC(len(n.Endpoints) - 1), Scope: uint32(r.Scope)}
				if r.Dst != nil {
					gr.Dest = r.Dst.String()
				}
				n.Routes = append(n.Routes, gr)
			}
		}
		return nil
	})
	if err != nil {
		n.Teardown()
		return nil, fmt.Errorf("network of %s: %w", nsPath, err)
	}
	return n, nil
}

func guestNIC(i int) string { return "eth" + strconv.Itoa(i) }

// mirror creates the tap of one link and the redirects between them; it
// runs inside the namespace.
func mirror(l netlink.Link, i int) (Endpoint, error) {
	a := l.Attrs()
	ep := Endpoint{Veth: a.Name, Tap: "tap" + strconv.Itoa(i) + "_hull", MAC: a.HardwareAddr.String(), MTU: a.MTU}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return ep, err
	}
	for _, ad := range addrs {
		if ad.IP.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := ad.Mask.Size()
		ep.Addrs = append(ep.Addrs, &agentproto.IPAddress{Address: ad.IP.String(), PrefixLen: uint32(ones)})
	}
	if ep.tapFile, err = createTap(ep.Tap, a.MTU); err != nil {
		return ep, err
	}
	fail := func(err error) (Endpoint, error) {
		ep.tapFile.Close()
		_ = removeIngress(l)
		return ep, err
	}
	tl, err := netlink.LinkByName(ep.Tap)
	if err != nil {
		return fail(err)
	}
	if err := netlink.LinkSetMTU(tl, a.MTU); err != nil {
		return fail(fmt.Errorf("tap mtu: %w", err))
	}
	if err := netlink.LinkSetUp(tl); err != nil {
		return fail(fmt.Errorf("tap up: %w", err))
	}
	for _, pair := range [][2]netlink.Link{{l, tl}, {tl, l}} {
		if err := redirect(pair[0], pair[1]); err != nil {
			return fail(err)
		}
	}
	return ep, nil
}

// createTap creates a tap for QEMU's virtio-net (one queue, vnet headers)
// in the current network namespace. It lives as long as a file descriptor
// holds it: QEMU's, once the returned one is closed.
func createTap(name string, mtu int) (*os.File, error) {
	tap := &netlink.Tuntap{
		LinkAttrs:  netlink.LinkAttrs{Name: name, MTU: mtu},
		Mode:       netlink.TUNTAP_MODE_TAP,
		Flags:      netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR | netlink.TUNTAP_ONE_QUEUE,
		Queues:     1,
		NonPersist: true,
	}
	if err := netlink.LinkAdd(tap); err != nil {
		return nil, fmt.Errorf("create tap %s: %w", name, err)
	}
	if len(tap.Fds) != 1 {
		for _, f := range tap.Fds {
			f.Close()
		}
		return nil, fmt.Errorf("create tap %s: got %d queues", name, len(tap.Fds))
	}
	return tap.Fds[0], nil
}

// redirect sends everything arriving on from out of to.
func redirect(from, to netlink.Link) error {
	ingress := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: from.Attrs().Index, Parent: netlink.HANDLE_INGRESS, Handle: netlink.MakeHandle(0xffff, 0)}}
	if err := netlink.QdiscAdd(ingress); err != nil {
		return fmt.Errorf("ingress qdisc on %s: %w", from.Attrs().Name, err)
	}
	filter := &netlink.U32{
		FilterAttrs: netlink.FilterAttrs{LinkIndex: from.Attrs().Index, Parent: netlink.MakeHandle(0xffff, 0),
			Priority: 1, Protocol: unix.ETH_P_ALL},
		Actions: []netlink.Action{netlink.NewMirredAction(to.Attrs().Index)},
	}
	if err := netlink.FilterAdd(filter); err != nil {
		return fmt.Errorf("redirect %s to %s: %w", from.Attrs().Name, to.Attrs().Name, err)
	}
	return nil
}

func removeIngress(l netlink.Link) error {
	qs, err := netlink.QdiscList(l)
	if err != nil {
		return err
	}
	for _, q := range qs {
		if q.Type() == "ingress" {
			if err := netlink.QdiscDel(q); err != nil {
				return err
			}
		}
	}
	return nil
}

// NICs are the VM devices of the endpoints.
func (n *Network) NICs() []hypervisor.NIC {
	if n == nil {
		return nil
	}
	var nics []hypervisor.NIC
	for _, ep := range n.Endpoints {
		nics = append(nics, hypervisor.NIC{Tap: ep.tapFile, MAC: ep.MAC})
	}
	return nics
}

// GuestInterfaces is what the agent configures.
func (n *Network) GuestInterfaces() []*agentproto.Interface {
	var out []*agentproto.Interface
	for i, ep := range n.Endpoints {
		out = append(out, &agentproto.Interface{Mac: ep.MAC, Name: guestNIC(i), Mtu: uint32(ep.MTU), Addresses: ep.Addrs})
	}
	return out
}

// CloneAddresses give a clone's NICs, the template's (templateMAC), the
// sandbox's MACs.
func (n *Network) CloneAddresses() []*agentproto.NICAddress {
	if n == nil {
		return nil
	}
	var out []*agentproto.NICAddress
	for i, ep := range n.Endpoints {
		out = append(out, &agentproto.NICAddress{TemplateMac: templateMAC(i), Mac: ep.MAC})
	}
	return out
}

// ReleaseTaps closes hull's copies of the tap descriptors (QEMU keeps its
// own; the taps vanish when QEMU exits).
func (n *Network) ReleaseTaps() {
	for i := range n.Endpoints {
		if f := n.Endpoints[i].tapFile; f != nil {
			f.Close()
			n.Endpoints[i].tapFile = nil
		}
	}
}

// Teardown removes the redirects from the namespace's links and closes the
// taps. The namespace itself and its veths belong to whoever made them.
func (n *Network) Teardown() error {
	if n == nil {
		return nil
	}
	n.ReleaseTaps()
	var errs []error
	err := InNetNS(n.NetNS, func() error {
		for _, ep := range n.Endpoints {
			for _, name := range []string{ep.Veth, ep.Tap} {
				l, err := netlink.LinkByName(name)
				if err != nil {
					continue // gone with its owner
				}
				errs = append(errs, removeIngress(l))
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
