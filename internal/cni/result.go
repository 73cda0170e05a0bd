package cni

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/knast/knast/internal/network"
)

// Indexes of the interfaces in a result: the bridge, the host end of the pair, the container end.
const (
	ifBridge = iota
	ifHost
	ifContainer
)

// BuildResult is ADD's result for attachment a of network n: the bridge, the host end and the container
// end (sandbox = its netns) as interfaces, the container's address with the gateway, a default route
// through the gateway and the config's DNS. macs holds host interfaces' MAC addresses by name (a missing
// one is left out).
func BuildResult(c *Config, n network.Network, a network.Attachment, macs map[string]string) *types100.Result {
	addr := a.Address.Addr()
	bits := addr.BitLen()
	defDst := net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	if addr.Is6() {
		defDst = net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
	}
	gw := net.IP(a.Gateway.AsSlice())
	r := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{
			ifBridge:    {Name: n.Bridge, Mac: macs[n.Bridge]},
			ifHost:      {Name: a.HostIf, Mac: macs[a.HostIf]},
			ifContainer: {Name: a.IfName, Mac: a.MAC, Mtu: n.MTU, Sandbox: a.NetNS},
		},
		IPs: []*types100.IPConfig{{
			Interface: types100.Int(ifContainer),
			Address:   net.IPNet{IP: net.IP(addr.AsSlice()), Mask: net.CIDRMask(a.Address.Bits(), bits)},
			Gateway:   gw,
		}},
		Routes: []*types.Route{{Dst: defDst, GW: gw}},
		DNS:    c.DNS,
	}
	return r
}

// CheckResult compares a prevResult with the attachment the network store holds for the container:
// the interface ifName must be there with sandbox netns (and the attachment's netns and MAC), and carry
// the attachment's address and gateway. The kernel side is the network manager's Check.
func CheckResult(prev *types100.Result, ifName, netns string, a network.Attachment) error {
	if prev == nil {
		return invalid("CHECK needs a prevResult")
	}
	idx := -1
	for i, itf := range prev.Interfaces {
		if itf != nil && itf.Name == ifName && itf.Sandbox != "" {
			idx = i
			break
		}
	}
	if idx < 0 {
		return fmt.Errorf("prevResult lists no interface %s inside a sandbox", ifName)
	}
	itf := prev.Interfaces[idx]
	var diffs []string
	if itf.Sandbox != netns {
		diffs = append(diffs, fmt.Sprintf("prevResult sandbox %s, CNI_NETNS %s", itf.Sandbox, netns))
	}
	if a.NetNS != netns {
		diffs = append(diffs, fmt.Sprintf("attached in netns %s, CNI_NETNS %s", a.NetNS, netns))
	}
	if itf.Mac != "" && a.MAC != "" && !strings.EqualFold(itf.Mac, a.MAC) {
		diffs = append(diffs, fmt.Sprintf("prevResult MAC %s, attachment MAC %s", itf.Mac, a.MAC))
	}
	found := false
	var seen []string
	for _, ipc := range prev.IPs {
		if ipc == nil || (ipc.Interface != nil && *ipc.Interface != idx) {
			continue
		}
		p, ok := prefixOf(ipc.Address)
		if !ok {
			continue
		}
		seen = append(seen, p.String())
		if p != a.Address {
			continue
		}
		found = true
		if gw, ok := netip.AddrFromSlice(ipc.Gateway); ipc.Gateway != nil && (!ok || gw.Unmap() != a.Gateway) {
			diffs = append(diffs, fmt.Sprintf("prevResult gateway %s, network gateway %s", ipc.Gateway, a.Gateway))
		}
	}
	if !found {
		diffs = append(diffs, fmt.Sprintf("prevResult addresses of %s [%s], attachment address %s", ifName, strings.Join(seen, " "), a.Address))
	}
	if len(diffs) > 0 {
		return fmt.Errorf("%s/%s: %s", a.ContainerID, ifName, strings.Join(diffs, "; "))
	}
	return nil
}

// prefixOf turns a result's address into a prefix (IPv4 in its 4-byte form).
func prefixOf(n net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	a = a.Unmap()
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, ones), true
}
