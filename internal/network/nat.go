package network

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// natPlan is what knast's NAT table must hold, decided in pure Go from the store; the drivers translate it
// (nftables on Linux, pf on FreeBSD).
type natPlan struct {
	// masq are the subnets whose traffic to anywhere outside them (but multicast) is masqueraded.
	masq []netip.Prefix
	// nets are every network: their bridges' traffic is accepted by the forward chain, DNAT'd flows
	// between two addresses of one subnet are masqueraded (hairpin: without it the reply would go
	// straight back over the bridge and miss the reverse NAT), and DNAT'd flows from 127.0.0.0/8 leaving
	// through the bridge are masqueraded (a loopback source cannot leave the host).
	nets []natNet
	// dnat are the published ports, sorted.
	dnat []dnatRule
}

type natNet struct {
	bridge string
	subnet netip.Prefix
}

// dnatRule sends traffic for hostIP (zero: any local address):hostPort/proto to dest.
type dnatRule struct {
	hostIP   netip.Addr
	proto    string
	hostPort uint16
	dest     netip.AddrPort
	// container is for comments and errors.
	container string
}

// planNAT computes the plan; attachments of networks missing from nets are ignored (a store being
// changed by hand is no reason to fail every other container).
func planNAT(nets []Network, atts []Attachment) natPlan {
	var p natPlan
	known := map[string]bool{}
	for _, n := range slices.SortedFunc(slices.Values(nets), func(a, b Network) int { return strings.Compare(a.Name, b.Name) }) {
		known[n.Name] = true
		p.nets = append(p.nets, natNet{bridge: n.Bridge, subnet: n.Subnet.Masked()})
		if n.IPMasq {
			p.masq = append(p.masq, n.Subnet.Masked())
		}
	}
	for _, a := range atts {
		if !known[a.Network] {
			continue
		}
		for _, pm := range a.Ports {
			p.dnat = append(p.dnat, dnatRule{
				hostIP: pm.HostIP, proto: pm.Protocol, hostPort: pm.HostPort,
				dest: netip.AddrPortFrom(a.Address.Addr(), pm.ContainerPort), container: a.ContainerID,
			})
		}
	}
	slices.SortFunc(p.dnat, func(a, b dnatRule) int {
		if c := strings.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		if a.hostPort != b.hostPort {
			return int(a.hostPort) - int(b.hostPort)
		}
		return a.hostIP.Compare(b.hostIP)
	})
	return p
}

// empty reports whether there is nothing to hold: the table is then removed.
func (p natPlan) empty() bool { return len(p.nets) == 0 }

// NATTable is the name of the NAT table (nftables) or anchor (pf) that knast owns for a storage
// directory: "knast" for the default one, "knast-" and a hash of the path for another, so two stores on
// one host (tests, a CNI configuration with its own directory) never rebuild each other's rules away.
func NATTable(storageDir string) string {
	if storageDir == "" {
		storageDir = DefaultStorageDir
	}
	if abs, err := filepath.Abs(storageDir); err == nil {
		storageDir = abs
	}
	storageDir = filepath.Clean(storageDir)
	if storageDir == DefaultStorageDir {
		return "knast"
	}
	h := sha256.Sum256([]byte(storageDir))
	return "knast-" + hex.EncodeToString(h[:4])
}
