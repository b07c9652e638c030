package guest

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/containerd/console"
	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hull-runtime/hull/agentproto"
)

func consoleSize(rows, cols uint32) console.WinSize {
	return console.WinSize{Height: uint16(rows), Width: uint16(cols)}
}

// LoopbackUp brings lo up; every container shares the VM's network.
func LoopbackUp() error {
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("loopback: %w", err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		return fmt.Errorf("loopback up: %w", err)
	}
	return nil
}

// UpdateInterfaces configures the NICs the host mirrored into the VM; each is
// found by its MAC.
func (s *Service) UpdateInterfaces(_ context.Context, req *agentproto.UpdateInterfacesRequest) (*agentproto.Empty, error) {
	for _, ifc := range req.Interfaces {
		if err := configureInterface(ifc); err != nil {
			return nil, status.Errorf(codes.Unknown, "interface %s: %v", ifc.Mac, err)
		}
	}
	return &agentproto.Empty{}, nil
}

func configureInterface(ifc *agentproto.Interface) error {
	mac, err := net.ParseMAC(ifc.Mac)
	if err != nil {
		return err
	}
	link, err := linkByMAC(mac)
	if err != nil {
		return err
	}
	if ifc.Name != "" && ifc.Name != link.Attrs().Name {
		if err := netlink.LinkSetDown(link); err != nil {
			return err
		}
		if err := netlink.LinkSetName(link, ifc.Name); err != nil {
			return fmt.Errorf("rename to %s: %w", ifc.Name, err)
		}
	}
	if ifc.Mtu > 0 {
		if err := netlink.LinkSetMTU(link, int(ifc.Mtu)); err != nil {
			return fmt.Errorf("mtu %d: %w", ifc.Mtu, err)
		}
	}
	for _, a := range ifc.Addresses {
		ip := net.ParseIP(a.Address)
		if ip == nil {
			return fmt.Errorf("bad address %q", a.Address)
		}
		bits := 32
		if ip.To4() == nil {
			bits = 128
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: ip, Mask: net.CIDRMask(int(a.PrefixLen), bits)}}
		if err := netlink.AddrReplace(link, addr); err != nil {
			return fmt.Errorf("address %s/%d: %w", a.Address, a.PrefixLen, err)
		}
	}
	return netlink.LinkSetUp(link)
}

// linkByMAC is the guest's link whose address is mac.
func linkByMAC(mac net.HardwareAddr) (netlink.Link, error) {
	links, err := netlink.LinkList()
	if err != nil {
		return nil, err
	}
	for _, l := range links {
		if strings.EqualFold(l.Attrs().HardwareAddr.String(), mac.String()) {
			return l, nil
		}
	}
	return nil, fmt.Errorf("no NIC with MAC %s", mac)
}

// SetNICAddresses gives a clone's NICs, which the guest probed in the
// template with the template's MACs, the sandbox's. virtio-net passes the
// change to QEMU (VIRTIO_NET_CTRL_MAC_ADDR_SET), whose receive filter then
// takes the new address; the configuration that follows finds each NIC by
// it, as after a boot.
func SetNICAddresses(nics []*agentproto.NICAddress) error {
	for _, n := range nics {
		from, err := net.ParseMAC(n.TemplateMac)
		if err != nil {
			return fmt.Errorf("nic address: %w", err)
		}
		to, err := net.ParseMAC(n.Mac)
		if err != nil {
			return fmt.Errorf("nic address: %w", err)
		}
		link, err := linkByMAC(from)
		if err != nil {
			return fmt.Errorf("nic address: %w", err)
		}
		if err := netlink.LinkSetHardwareAddr(link, to); err != nil {
			return fmt.Errorf("nic %s: set MAC %s: %w", link.Attrs().Name, to, err)
		}
	}
	return nil
}

// UpdateRoutes adds (or replaces) the given routes.
func (s *Service) UpdateRoutes(_ context.Context, req *agentproto.UpdateRoutesRequest) (*agentproto.Empty, error) {
	for _, r := range req.Routes {
		if err := addRoute(r); err != nil {
			return nil, status.Errorf(codes.Unknown, "route %q via %q: %v", r.Dest, r.Gateway, err)
		}
	}
	return &agentproto.Empty{}, nil
}

func addRoute(r *agentproto.Route) error {
	route := &netlink.Route{Scope: netlink.Scope(r.Scope)}
	if r.Device != "" {
		link, err := netlink.LinkByName(r.Device)
		if err != nil {
			return err
		}
		route.LinkIndex = link.Attrs().Index
	}
	if r.Dest != "" {
		_, dst, err := net.ParseCIDR(r.Dest)
		if err != nil {
			return err
		}
		route.Dst = dst
	}
	if r.Gateway != "" {
		route.Gw = net.ParseIP(r.Gateway)
		if route.Gw == nil {
			return fmt.Errorf("bad gateway %q", r.Gateway)
		}
	}
	if r.Source != "" {
		route.Src = net.ParseIP(r.Source)
	}
	return netlink.RouteReplace(route)
}
