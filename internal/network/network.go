// Package network gives containers bridge networks: named networks with a subnet and a bridge, attachments
// (a veth or epair pair with one end in the container's network namespace or VNET jail), address management
// in the embedded store, masquerade for traffic leaving a subnet and published ports.
//
// The package decides in pure Go and acts through one OS seam, driver: netlink and nftables on Linux
// (driver_linux.go), if_bridge/if_epair ioctls, the routing socket and pf on FreeBSD (driver_freebsd.go).
// The NAT state is never patched rule by rule: after every change the driver rebuilds knast's own table
// from the store (syncNAT), so a crash between two steps is repaired by the next operation.
package network

import (
	"context"
	"net/netip"
	"time"
)

// Network is one named bridge network as kept in the store.
type Network struct {
	Name    string       `json:"name"`
	Bridge  string       `json:"bridge"`  // host interface name of the bridge
	Subnet  netip.Prefix `json:"subnet"`  // masked, e.g. 10.88.0.0/16
	Gateway netip.Addr   `json:"gateway"` // the bridge's address inside Subnet
	MTU     int          `json:"mtu,omitempty"`
	// IPMasq masquerades traffic from Subnet to any address outside it.
	IPMasq  bool              `json:"ipMasq"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
}

// PortMapping publishes a container port on the host (`-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/PROTO]`).
type PortMapping struct {
	HostIP        netip.Addr `json:"hostIP,omitzero"` // zero: every host address
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	Protocol      string     `json:"protocol"` // "tcp" or "udp"
}

// Attachment is one container's link on one network, as kept in the store; its address is the IPAM lease.
type Attachment struct {
	Network     string        `json:"network"`
	ContainerID string        `json:"containerID"`
	IfName      string        `json:"ifName"` // inside the container, "eth0" by default
	HostIf      string        `json:"hostIf"` // the host end of the pair
	NetNS       string        `json:"netns"`  // path of the network namespace (Linux) or jail name (FreeBSD)
	Address     netip.Prefix  `json:"address"`
	Gateway     netip.Addr    `json:"gateway"`
	MAC         string        `json:"mac,omitempty"`
	Ports       []PortMapping `json:"ports,omitempty"`
	Created     time.Time     `json:"created"`
}

// driver is the OS seam. Every method is idempotent: called again after a crash midway it completes or
// removes what the first call began.
type driver interface {
	// ensureBridge creates n's bridge if missing, gives it n.Gateway in n.Subnet, sets its MTU and brings
	// it up.
	ensureBridge(ctx context.Context, n *Network) error
	// removeBridge deletes n's bridge; a missing bridge is not an error.
	removeBridge(ctx context.Context, n *Network) error
	// attach creates the pair a.HostIf/a.IfName, plugs the host end into n's bridge, moves the other end
	// into a.NetNS, gives it a.Address (and a.MAC when set), brings it and loopback up and routes the
	// default via a.Gateway. It fills a.MAC when it was empty.
	attach(ctx context.Context, n *Network, a *Attachment) error
	// detach deletes the host end (and with it the pair); a missing link is not an error.
	detach(ctx context.Context, n *Network, a *Attachment) error
	// check reports an error naming what differs between a and the kernel (CNI CHECK).
	check(ctx context.Context, n *Network, a *Attachment) error
	// syncNAT makes knast's NAT and port rules equal to what nets and atts ask for, in one transaction.
	syncNAT(ctx context.Context, nets []Network, atts []Attachment) error
	// hostRoutes lists the destinations the host routes, so a default subnet avoids them.
	hostRoutes(ctx context.Context) ([]netip.Prefix, error)
}
