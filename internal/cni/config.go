// Package cni is knast's CNI plugin, `knast-cni`: the knast binary reached through a symlink of that
// name. It implements CNI spec 1.1 (ADD, DEL, CHECK, STATUS, GC, VERSION) on top of internal/network,
// so a CNI network is a knast network: the same bridge, address leases, NAT table and published ports.
//
// Parsing a network config, reading CNI_ARGS and building or checking a result are pure functions;
// the command handlers (Plugin) talk to the network manager through a narrow interface, and the skel
// glue (Main) runs them on Linux.
package cni

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/knast/knast/internal/network"
)

// PluginType is the plugin's name: the symlink name and the "type" of its network configs.
const PluginType = "knast-cni"

// DefaultDataDir is where the network store lives when a config names no dataDir (knast's --storage).
const DefaultDataDir = "/var/lib/knast"

// Versions are the CNI spec versions the plugin accepts: 0.3.0 is the oldest with the result format
// the plugin builds; STATUS and GC need 1.1.0 (skel enforces that).
var Versions = version.VersionsStartingFrom("0.3.0")

// Config is a validated network config with its runtime parts (port mappings, requested address,
// prevResult, GC's valid attachments).
type Config struct {
	CNIVersion string
	Name       string
	Bridge     string       // empty: the network manager picks one
	Subnet     netip.Prefix // masked
	Gateway    netip.Addr   // zero: the network manager picks one
	IPMasq     *bool
	MTU        int
	DataDir    string
	DNS        types.DNS
	Ports      []network.PortMapping
	IP         netip.Addr // a requested address (runtimeConfig.ips or CNI_ARGS IP=); zero: any
	PrevResult *types100.Result
	// ValidAttachments is GC's list of attachments to keep (cni.dev/valid-attachments).
	ValidAttachments []types.GCAttachment
}

// netConf is the config as JSON.
type netConf struct {
	types.PluginConf
	Bridge        string `json:"bridge"`
	Subnet        string `json:"subnet"`
	Gateway       string `json:"gateway"`
	IPMasq        *bool  `json:"ipMasq"`
	MTU           int    `json:"mtu"`
	DataDir       string `json:"dataDir"`
	RuntimeConfig struct {
		PortMappings []portMapEntry `json:"portMappings"`
		IPs          []string       `json:"ips"`
	} `json:"runtimeConfig"`
	// The name libcni also sends for GC: the spec's first text used it.
	LegacyAttachments []types.GCAttachment `json:"cni.dev/attachments"`
}

// portMapEntry is one entry of the portMappings capability, as containerd and podman send it.
type portMapEntry struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP"`
}

// invalid is a CNI "invalid network config" error (code 7).
func invalid(format string, a ...any) *types.Error {
	return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, a...), "")
}

// ParseConfig decodes and validates a network config from stdin; args is CNI_ARGS. Errors are
// *types.Error with code 6 (not JSON) or 7 (invalid config).
func ParseConfig(stdin []byte, args string) (*Config, error) {
	var nc netConf
	if err := json.Unmarshal(stdin, &nc); err != nil {
		return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("decode network config: %v", err), "")
	}
	if nc.Name == "" {
		return nil, invalid("network config: missing name")
	}
	c := &Config{CNIVersion: nc.CNIVersion, Name: nc.Name, IPMasq: nc.IPMasq, MTU: nc.MTU, DNS: nc.DNS}
	if c.CNIVersion == "" {
		c.CNIVersion = "0.1.0"
	}
	if err := validIfName(nc.Bridge); nc.Bridge != "" && err != nil {
		return nil, invalid("network config %s: bridge: %v", nc.Name, err)
	}
	c.Bridge = nc.Bridge

	if nc.Subnet == "" {
		return nil, invalid("network config %s: missing subnet", nc.Name)
	}
	subnet, err := netip.ParsePrefix(nc.Subnet)
	if err != nil {
		return nil, invalid("network config %s: subnet: %v", nc.Name, err)
	}
	c.Subnet = subnet.Masked()
	if !c.Subnet.Addr().Is4() {
		// knast's networks (bridge, NAT table, published ports) are IPv4.
		return nil, invalid("network config %s: subnet %s is not IPv4", nc.Name, c.Subnet)
	}
	if c.Subnet.Bits() > c.Subnet.Addr().BitLen()-2 {
		return nil, invalid("network config %s: subnet %s has no room for a gateway and a container", nc.Name, c.Subnet)
	}
	if nc.Gateway != "" {
		gw, err := netip.ParseAddr(nc.Gateway)
		if err != nil {
			return nil, invalid("network config %s: gateway: %v", nc.Name, err)
		}
		if err := hostOf(c.Subnet, gw); err != nil {
			return nil, invalid("network config %s: gateway: %v", nc.Name, err)
		}
		c.Gateway = gw
	}
	if nc.MTU != 0 && (nc.MTU < 68 || nc.MTU > 65535) {
		return nil, invalid("network config %s: mtu %d is outside 68..65535", nc.Name, nc.MTU)
	}
	c.DataDir = nc.DataDir
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if !filepath.IsAbs(c.DataDir) {
		return nil, invalid("network config %s: dataDir %q is not an absolute path", nc.Name, nc.DataDir)
	}
	if c.Ports, err = portMappings(c.Subnet, nc.RuntimeConfig.PortMappings); err != nil {
		return nil, invalid("network config %s: %v", nc.Name, err)
	}
	if c.IP, err = requestedIP(c.Subnet, nc.RuntimeConfig.IPs, args); err != nil {
		return nil, invalid("network config %s: %v", nc.Name, err)
	}
	if c.Gateway.IsValid() && c.IP == c.Gateway {
		return nil, invalid("network config %s: requested address %s is the gateway", nc.Name, c.IP)
	}

	c.ValidAttachments = nc.ValidAttachments
	if c.ValidAttachments == nil {
		c.ValidAttachments = nc.LegacyAttachments
	}
	if nc.RawPrevResult != nil {
		if err := version.ParsePrevResult(&nc.PluginConf); err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network config %s: prevResult: %v", nc.Name, err), "")
		}
		prev, err := types100.NewResultFromResult(nc.PrevResult)
		if err != nil {
			return nil, types.NewError(types.ErrDecodingFailure, fmt.Sprintf("network config %s: prevResult: %v", nc.Name, err), "")
		}
		c.PrevResult = prev
	}
	return c, nil
}

// CreateOptions is what the network manager needs to create (or find) the config's network.
func (c *Config) CreateOptions() network.CreateOptions {
	return network.CreateOptions{
		Name:    c.Name,
		Subnet:  c.Subnet,
		Gateway: c.Gateway,
		Bridge:  c.Bridge,
		MTU:     c.MTU,
		IPMasq:  c.IPMasq,
		Labels:  map[string]string{"knast.cni": "true"},
	}
}

// Matches reports how an existing network differs from the config (subnet, bridge, gateway), or nil.
func (c *Config) Matches(n network.Network) error {
	var diffs []string
	if n.Subnet != c.Subnet {
		diffs = append(diffs, fmt.Sprintf("subnet %s (config: %s)", n.Subnet, c.Subnet))
	}
	if c.Bridge != "" && n.Bridge != c.Bridge {
		diffs = append(diffs, fmt.Sprintf("bridge %s (config: %s)", n.Bridge, c.Bridge))
	}
	if c.Gateway.IsValid() && n.Gateway != c.Gateway {
		diffs = append(diffs, fmt.Sprintf("gateway %s (config: %s)", n.Gateway, c.Gateway))
	}
	if len(diffs) == 0 {
		return nil
	}
	return invalid("network %s exists with %s", c.Name, strings.Join(diffs, ", "))
}

// validIfName applies the kernel's rules for an interface name.
func validIfName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty interface name")
	case len(name) > 15:
		return fmt.Errorf("interface name %q is longer than 15 bytes", name)
	case name == "." || name == "..":
		return fmt.Errorf("interface name %q is not allowed", name)
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", name)
	}
	return nil
}

// hostOf reports whether a is a host address of p: inside it, and neither its network nor (IPv4) its
// broadcast address.
func hostOf(p netip.Prefix, a netip.Addr) error {
	if !p.Contains(a) {
		return fmt.Errorf("%s is outside %s", a, p)
	}
	if a == p.Addr() {
		return fmt.Errorf("%s is the network address of %s", a, p)
	}
	if a.Is4() && a == lastAddr(p) {
		return fmt.Errorf("%s is the broadcast address of %s", a, p)
	}
	return nil
}

// lastAddr is the highest address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// portMappings validates the portMappings capability: ports 1..65535, tcp or udp (tcp when empty),
// a host address of the subnet's family, no host port published twice.
func portMappings(subnet netip.Prefix, in []portMapEntry) ([]network.PortMapping, error) {
	if len(in) == 0 {
		return nil, nil
	}
	out := make([]network.PortMapping, 0, len(in))
	for _, e := range in {
		if e.HostPort < 1 || e.HostPort > 65535 || e.ContainerPort < 1 || e.ContainerPort > 65535 {
			return nil, fmt.Errorf("port mapping %d:%d: ports must be 1..65535", e.HostPort, e.ContainerPort)
		}
		proto := strings.ToLower(e.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		if proto != "tcp" && proto != "udp" {
			return nil, fmt.Errorf("port mapping %d:%d: protocol %q is not tcp or udp", e.HostPort, e.ContainerPort, e.Protocol)
		}
		pm := network.PortMapping{HostPort: uint16(e.HostPort), ContainerPort: uint16(e.ContainerPort), Protocol: proto}
		if e.HostIP != "" {
			ip, err := netip.ParseAddr(e.HostIP)
			if err != nil {
				return nil, fmt.Errorf("port mapping %d:%d: hostIP: %v", e.HostPort, e.ContainerPort, err)
			}
			ip = ip.Unmap()
			if ip.Is4() != subnet.Addr().Is4() {
				return nil, fmt.Errorf("port mapping %d:%d: hostIP %s is not of the subnet's family (%s)", e.HostPort, e.ContainerPort, ip, subnet)
			}
			if !ip.IsUnspecified() {
				pm.HostIP = ip
			}
		}
		// An unspecified host address takes the port on every address, so it clashes with any other.
		for _, o := range out {
			if o.HostPort == pm.HostPort && o.Protocol == pm.Protocol &&
				(o.HostIP == pm.HostIP || !o.HostIP.IsValid() || !pm.HostIP.IsValid()) {
				return nil, fmt.Errorf("port mapping %d/%s: host port published twice", pm.HostPort, proto)
			}
		}
		out = append(out, pm)
	}
	return out, nil
}

// requestedIP picks the address asked for through runtimeConfig.ips (the "ips" capability) or
// CNI_ARGS IP= (CNI_ARGS wins, as with host-local). Addresses of the other family are skipped; one of the
// subnet's family must be a host address of it.
func requestedIP(subnet netip.Prefix, ips []string, args string) (netip.Addr, error) {
	var cands []string
	for _, kv := range strings.Split(args, ";") {
		k, v, ok := strings.Cut(kv, "=")
		if ok && strings.TrimSpace(k) == "IP" {
			cands = append(cands, strings.Split(v, ",")...)
		}
	}
	cands = append(cands, ips...)
	for _, s := range cands {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			p, perr := netip.ParsePrefix(s)
			if perr != nil {
				return netip.Addr{}, fmt.Errorf("requested address %q: %v", s, err)
			}
			a = p.Addr()
		}
		a = a.Unmap()
		if a.Is4() != subnet.Addr().Is4() {
			continue
		}
		if err := hostOf(subnet, a); err != nil {
			return netip.Addr{}, fmt.Errorf("requested address: %v", err)
		}
		return a, nil
	}
	return netip.Addr{}, nil
}

// Capacity is how many containers the subnet holds: every host address but the gateway (IPv4 also
// loses the network and broadcast addresses). Large subnets are capped at 1<<20.
func Capacity(subnet netip.Prefix) int {
	hostBits := subnet.Addr().BitLen() - subnet.Bits()
	if hostBits >= 20 {
		return 1 << 20
	}
	n := 1<<hostBits - 1 // network address
	if subnet.Addr().Is4() {
		n-- // broadcast
	}
	return n - 1 // gateway
}
