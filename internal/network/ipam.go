package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// ErrNotExist, ErrExist, ErrInUse and ErrExhausted are wrapped by the errors callers branch on.
var (
	ErrNotExist  = errors.New("does not exist")
	ErrExist     = errors.New("already exists")
	ErrInUse     = errors.New("in use")
	ErrExhausted = errors.New("no free address")
)

// DefaultName is the network used when none is named.
const DefaultName = "knast"

// reserved are subnets other engines use by default; knast never picks them on its own, so a host running
// podman or Docker beside knast keeps working.
var reserved = []netip.Prefix{
	netip.MustParsePrefix("10.88.0.0/16"),  // podman's default network
	netip.MustParsePrefix("172.17.0.0/16"), // Docker's docker0
}

// candidates yields the /24s a network with no --subnet may get, in order: 10.90.0.0/24 ...
// 10.99.255.0/24 (podman numbers its extra networks in 10.89.x.0/24).
func candidates(yield func(netip.Prefix) bool) {
	for b := 90; b <= 99; b++ {
		for c := 0; c <= 255; c++ {
			if !yield(netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(b), byte(c), 0}), 24)) {
				return
			}
		}
	}
}

// pickSubnet returns the first candidate that overlaps no taken prefix and no reserved one. Routes
// of length 0 (the default route) overlap everything and are ignored.
func pickSubnet(taken []netip.Prefix) (netip.Prefix, error) {
	avoid := slices.Clone(reserved)
	for _, p := range taken {
		if p.IsValid() && p.Bits() > 0 && p.Addr().Is4() {
			avoid = append(avoid, p.Masked())
		}
	}
	for c := range candidates {
		if !slices.ContainsFunc(avoid, c.Overlaps) {
			return c, nil
		}
	}
	return netip.Prefix{}, errors.New("no free subnet in 10.90.0.0/16-10.99.0.0/16: pass --subnet")
}

// pickBridge returns the first knastN not used by a network nor present on the host.
func pickBridge(used []string) string {
	for i := 0; ; i++ {
		name := "knast" + strconv.Itoa(i)
		if !slices.Contains(used, name) {
			return name
		}
	}
}

var nameRe = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]*$`)

// validName checks a network name: it is a key in the store, a word on the command line and part of CNI
// file names.
func validName(name string) error {
	if len(name) > 64 || !nameRe.MatchString(name) {
		return fmt.Errorf("network name %q: use 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit", name)
	}
	return nil
}

// validIfName checks a Linux interface name: at most 15 bytes, no '/', ':' or white space.
func validIfName(what, name string) error {
	if name == "" || len(name) > 15 || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n") {
		return fmt.Errorf("%s %q: an interface name is 1-15 characters without '/', ':' or spaces", what, name)
	}
	return nil
}

// completeNetwork validates n and fills its defaults: the subnet masked, the gateway (first host
// address) when unset. taken are the subnets of the other networks.
func completeNetwork(n *Network, taken []Network) error {
	if err := validName(n.Name); err != nil {
		return err
	}
	if err := validIfName("bridge", n.Bridge); err != nil {
		return err
	}
	if !n.Subnet.IsValid() || !n.Subnet.Addr().Is4() {
		return fmt.Errorf("network %s: subnet %v: want an IPv4 CIDR such as 10.90.0.0/24", n.Name, n.Subnet)
	}
	if n.Subnet.Bits() > 30 {
		return fmt.Errorf("network %s: subnet %v is too small: it needs room for a gateway and a container (at most /30)", n.Name, n.Subnet)
	}
	n.Subnet = n.Subnet.Masked()
	if !n.Gateway.IsValid() {
		n.Gateway = n.Subnet.Addr().Next()
	}
	if !n.Gateway.Is4() || !n.Subnet.Contains(n.Gateway) || n.Gateway == n.Subnet.Addr() || n.Gateway == broadcast(n.Subnet) {
		return fmt.Errorf("network %s: gateway %v is not a host address of subnet %v", n.Name, n.Gateway, n.Subnet)
	}
	if n.MTU != 0 && (n.MTU < 68 || n.MTU > 65535) {
		return fmt.Errorf("network %s: MTU %d: want 68-65535", n.Name, n.MTU)
	}
	for _, o := range taken {
		if o.Name == n.Name {
			return fmt.Errorf("network %s: %w", n.Name, ErrExist)
		}
		if o.Subnet.Overlaps(n.Subnet) {
			return fmt.Errorf("network %s: subnet %v overlaps network %s (%v)", n.Name, n.Subnet, o.Name, o.Subnet)
		}
		if o.Bridge == n.Bridge {
			return fmt.Errorf("network %s: bridge %s is used by network %s", n.Name, n.Bridge, o.Name)
		}
	}
	return nil
}

// broadcast is the last address of p.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := (uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// allocate returns the requested address, or the lowest free host address of n, given the addresses
// leased already. The network and broadcast addresses and the gateway are never handed out.
func allocate(n *Network, leased map[netip.Addr]bool, want netip.Addr) (netip.Addr, error) {
	bcast := broadcast(n.Subnet)
	if want.IsValid() {
		if !n.Subnet.Contains(want) || want == n.Subnet.Addr() || want == bcast || want == n.Gateway {
			return netip.Addr{}, fmt.Errorf("network %s: address %v is not a host address of subnet %v other than the gateway %v", n.Name, want, n.Subnet, n.Gateway)
		}
		if leased[want] {
			return netip.Addr{}, fmt.Errorf("network %s: address %v: %w", n.Name, want, ErrInUse)
		}
		return want, nil
	}
	for a := n.Subnet.Addr().Next(); a.IsValid() && n.Subnet.Contains(a) && a != bcast; a = a.Next() {
		if a != n.Gateway && !leased[a] {
			return a, nil
		}
	}
	return netip.Addr{}, fmt.Errorf("network %s: subnet %v: %w (%d addresses leased)", n.Name, n.Subnet, ErrExhausted, len(leased))
}

// macFor derives the MAC from the address, as Docker does: a reused address keeps its MAC, so neighbours'
// ARP caches never point at a departed container's MAC. 0a:58 is a locally administered unicast prefix
// (the one the CNI plugins use).
func macFor(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("0a:58:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3])
}

// hostIfName names the host end of a pair: "knv" and 10 hex digits of a hash of the attachment's identity,
// so it fits IFNAMSIZ and is the same on every retry. salt > 0 resolves a collision with another lease.
func hostIfName(network, containerID, ifName string, salt int) string {
	h := sha256.Sum256([]byte(network + "\x00" + containerID + "\x00" + ifName + "\x00" + strconv.Itoa(salt)))
	return "knv" + hex.EncodeToString(h[:5])
}

// attachmentKey is an attachment's key inside its network's bucket.
func attachmentKey(containerID, ifName string) string { return containerID + "\x00" + ifName }
