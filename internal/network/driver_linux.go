package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// linuxDriver acts through rtnetlink (vishvananda/netlink) and nf_tables (google/nftables). It never
// switches the namespace of a thread itself: links in a container's namespace are changed through a
// netlink handle bound to it (the library opens that socket on a locked thread and switches back).
type linuxDriver struct {
	log   *slog.Logger
	table string // the nftables table, see NATTable
}

func newDriver(log *slog.Logger) driver { return &linuxDriver{log: log, table: "knast"} }

func (d *linuxDriver) setNATTable(name string) { d.table = name }

func (d *linuxDriver) natTable() string { return d.table }

// retryDump repeats a netlink dump the kernel interrupted because the list changed meanwhile (other
// containers come and go all the time).
func retryDump[T any](f func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := f()
		if !errors.Is(err, netlink.ErrDumpInterrupted) || i == 10 {
			return v, err
		}
	}
}

func (d *linuxDriver) hostRoutes(context.Context) ([]netip.Prefix, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) { return netlink.RouteList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	var out []netip.Prefix
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		if p, ok := prefixOf(r.Dst); ok {
			out = append(out, p)
		}
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return netlink.AddrList(nil, netlink.FAMILY_V4) })
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if p, ok := prefixOf(a.IPNet); ok {
			out = append(out, p.Masked())
		}
	}
	return out, nil
}

func (d *linuxDriver) hostLinks(context.Context) ([]string, error) {
	links, err := retryDump(netlink.LinkList)
	if err != nil {
		return nil, fmt.Errorf("list links: %w", err)
	}
	out := make([]string, 0, len(links))
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

// writeSysctl writes a /proc/sys value unless it is already set, so a read-only /proc/sys that already
// says what we want is no error.
func writeSysctl(path, value string) error {
	if b, err := os.ReadFile(path); err == nil && string(b) == value+"\n" {
		return nil
	}
	if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

func (d *linuxDriver) ensureBridge(_ context.Context, n *Network) error {
	l, err := netlink.LinkByName(n.Bridge)
	if _, missing := err.(netlink.LinkNotFoundError); missing {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, MTU: n.MTU, TxQLen: -1}}
		if err := netlink.LinkAdd(br); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create bridge %s: %w", n.Bridge, err)
		}
		l, err = netlink.LinkByName(n.Bridge)
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("bridge %s: the host has an interface of that name that is a %s, not a bridge", n.Bridge, l.Type())
	}
	if n.MTU > 0 && l.Attrs().MTU != n.MTU {
		if err := netlink.LinkSetMTU(l, n.MTU); err != nil {
			return fmt.Errorf("bridge %s: set MTU %d: %w", n.Bridge, n.MTU, err)
		}
	}
	gw := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.Gateway, n.Subnet.Bits()))}
	if err := netlink.AddrAdd(l, gw); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("bridge %s: add address %v: %w", n.Bridge, gw.IPNet, err)
	}
	// Read first, write on difference: a repeat attach then sends no change to the kernel.
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := netlink.LinkSetUp(l); err != nil {
			return fmt.Errorf("bridge %s: up: %w", n.Bridge, err)
		}
	}
	// route_localnet lets a connection to 127.0.0.1:HOSTPORT, DNAT'd in the output hook, leave through
	// the bridge (then masqueraded); the kernel drops loopback sources on other interfaces otherwise.
	conf := filepath.Join("/proc/sys/net/ipv4/conf", n.Bridge)
	if err := writeSysctl(filepath.Join(conf, "route_localnet"), "1"); err != nil {
		return err
	}
	return writeSysctl("/proc/sys/net/ipv4/ip_forward", "1")
}

func (d *linuxDriver) removeBridge(_ context.Context, n *Network) error {
	l, err := netlink.LinkByName(n.Bridge)
	if _, missing := err.(netlink.LinkNotFoundError); missing {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if l.Type() != "bridge" {
		return fmt.Errorf("bridge %s: not a bridge (%s), left alone", n.Bridge, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete bridge %s: %w", n.Bridge, err)
	}
	return nil
}

// openNS returns a netlink handle inside the namespace at path.
func openNS(path string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, 0, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink in network namespace %s: %w", path, err)
	}
	return h, ns, nil
}

func (d *linuxDriver) attach(_ context.Context, n *Network, a *Attachment) error {
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	h, ns, err := openNS(a.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()
	// A pair left by a crash is replaced; deleting the host end removes the other end too.
	if old, err := netlink.LinkByName(a.HostIf); err == nil {
		if err := netlink.LinkDel(old); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("delete stale %s: %w", a.HostIf, err)
		}
	}
	if _, err := h.LinkByName(a.IfName); err == nil {
		return fmt.Errorf("%s already exists in network namespace %s", a.IfName, a.NetNS)
	}
	mtu := n.MTU
	if mtu == 0 {
		mtu = br.Attrs().MTU
	}
	var mac net.HardwareAddr
	if a.MAC != "" {
		if mac, err = net.ParseMAC(a.MAC); err != nil {
			return fmt.Errorf("MAC %q: %w", a.MAC, err)
		}
	}
	// The peer is created directly inside the container's namespace under its final name: it never
	// exists in the host namespace, so its name cannot collide there.
	veth := &netlink.Veth{
		LinkAttrs:        netlink.LinkAttrs{Name: a.HostIf, MTU: mtu, MasterIndex: br.Attrs().Index, TxQLen: -1},
		PeerName:         a.IfName,
		PeerMTU:          uint32(mtu),
		PeerHardwareAddr: mac,
		PeerNamespace:    netlink.NsFd(ns),
	}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("create veth %s/%s: %w", a.HostIf, a.IfName, err)
	}
	host, err := netlink.LinkByName(a.HostIf)
	if err != nil {
		return fmt.Errorf("veth %s: %w", a.HostIf, err)
	}
	// Hairpin lets a bridge that filters (br_netfilter) send a DNAT'd frame back out of the port it came in.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		return fmt.Errorf("veth %s: hairpin: %w", a.HostIf, err)
	}
	if err := netlink.LinkSetUp(host); err != nil {
		return fmt.Errorf("veth %s: up: %w", a.HostIf, err)
	}
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("lo in %s: %w", a.NetNS, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("lo in %s: up: %w", a.NetNS, err)
	}
	in, err := h.LinkByName(a.IfName)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", a.IfName, a.NetNS, err)
	}
	if a.MAC == "" {
		a.MAC = in.Attrs().HardwareAddr.String()
	}
	if err := h.AddrAdd(in, &netlink.Addr{IPNet: ipNet(a.Address)}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("%s in %s: address %v: %w", a.IfName, a.NetNS, a.Address, err)
	}
	if err := h.LinkSetUp(in); err != nil {
		return fmt.Errorf("%s in %s: up: %w", a.IfName, a.NetNS, err)
	}
	def := &netlink.Route{LinkIndex: in.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Gw: a.Gateway.AsSlice()}
	if err := h.RouteAdd(def); err != nil {
		// A namespace with a default route already (a second network) keeps it: the first network wins.
		if !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("%s in %s: default route via %v: %w", a.IfName, a.NetNS, a.Gateway, err)
		}
		d.log.Debug("default route exists, kept", "netns", a.NetNS, "ifname", a.IfName)
	}
	return nil
}

func (d *linuxDriver) detach(_ context.Context, _ *Network, a *Attachment) error {
	l, err := netlink.LinkByName(a.HostIf)
	if _, missing := err.(netlink.LinkNotFoundError); missing {
		return nil // gone with its namespace, or never made
	}
	if err != nil {
		return fmt.Errorf("veth %s: %w", a.HostIf, err)
	}
	if l.Type() != "veth" {
		return fmt.Errorf("veth %s: the host interface of that name is a %s, left alone", a.HostIf, l.Type())
	}
	if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete veth %s: %w", a.HostIf, err)
	}
	return nil
}

func (d *linuxDriver) check(_ context.Context, n *Network, a *Attachment) error {
	host, err := netlink.LinkByName(a.HostIf)
	if err != nil {
		return fmt.Errorf("host interface %s: %w", a.HostIf, err)
	}
	br, err := netlink.LinkByName(n.Bridge)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", n.Bridge, err)
	}
	if host.Attrs().MasterIndex != br.Attrs().Index {
		return fmt.Errorf("host interface %s is not on bridge %s", a.HostIf, n.Bridge)
	}
	h, ns, err := openNS(a.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	defer h.Close()
	in, err := h.LinkByName(a.IfName)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", a.IfName, a.NetNS, err)
	}
	if in.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("%s in %s is down", a.IfName, a.NetNS)
	}
	if a.MAC != "" && in.Attrs().HardwareAddr.String() != a.MAC {
		return fmt.Errorf("%s in %s has MAC %s, want %s", a.IfName, a.NetNS, in.Attrs().HardwareAddr, a.MAC)
	}
	addrs, err := retryDump(func() ([]netlink.Addr, error) { return h.AddrList(in, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("%s in %s: addresses: %w", a.IfName, a.NetNS, err)
	}
	if !slices.ContainsFunc(addrs, func(x netlink.Addr) bool { p, ok := prefixOf(x.IPNet); return ok && p == a.Address }) {
		return fmt.Errorf("%s in %s lacks address %v", a.IfName, a.NetNS, a.Address)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) { return h.RouteList(in, netlink.FAMILY_V4) })
	if err != nil {
		return fmt.Errorf("%s in %s: routes: %w", a.IfName, a.NetNS, err)
	}
	if !slices.ContainsFunc(routes, func(r netlink.Route) bool {
		gw, _ := netip.AddrFromSlice(r.Gw)
		return (r.Dst == nil || r.Dst.IP.IsUnspecified()) && gw.Unmap() == a.Gateway
	}) {
		return fmt.Errorf("%s in %s has no default route via %v", a.IfName, a.NetNS, a.Gateway)
	}
	return nil
}
