package network

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// ParsePortMapping parses `-p [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]`, where both ports may be
// ranges of equal length (8080-8081:80-81), into one mapping per port. The protocol defaults to tcp.
func ParsePortMapping(s string) ([]PortMapping, error) {
	bad := func(why string) ([]PortMapping, error) {
		return nil, fmt.Errorf("port mapping %q: %s (want [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp])", s, why)
	}
	spec, proto := s, "tcp"
	if i := strings.LastIndexByte(s, '/'); i >= 0 {
		spec, proto = s[:i], strings.ToLower(s[i+1:])
		if proto != "tcp" && proto != "udp" {
			return bad("protocol " + strconv.Quote(s[i+1:]) + " is not tcp or udp")
		}
	}
	var hostIP netip.Addr
	i := strings.LastIndexByte(spec, ':')
	if i < 0 {
		return bad("no host port")
	}
	cport := spec[i+1:]
	rest := spec[:i]
	hport := rest
	if j := strings.LastIndexByte(rest, ':'); j >= 0 {
		ip := strings.TrimSuffix(strings.TrimPrefix(rest[:j], "["), "]")
		hport = rest[j+1:]
		a, err := netip.ParseAddr(ip)
		if err != nil || !a.Is4() {
			return bad("host address " + strconv.Quote(ip) + " is not an IPv4 address")
		}
		if !a.IsUnspecified() {
			hostIP = a
		}
	}
	hlo, hhi, err := portRange(hport)
	if err != nil {
		return bad("host port: " + err.Error())
	}
	clo, chi, err := portRange(cport)
	if err != nil {
		return bad("container port: " + err.Error())
	}
	if hhi-hlo != chi-clo {
		return bad("the host and container ranges differ in length")
	}
	out := make([]PortMapping, 0, hhi-hlo+1)
	for k := 0; k <= hhi-hlo; k++ {
		out = append(out, PortMapping{HostIP: hostIP, HostPort: uint16(hlo + k), ContainerPort: uint16(clo + k), Protocol: proto})
	}
	return out, nil
}

// portRange parses "N" or "N-M" with 1 <= N <= M <= 65535.
func portRange(s string) (lo, hi int, err error) {
	a, b, isRange := strings.Cut(s, "-")
	if lo, err = port(a); err != nil {
		return 0, 0, err
	}
	hi = lo
	if isRange {
		if hi, err = port(b); err != nil {
			return 0, 0, err
		}
		if hi < lo {
			return 0, 0, fmt.Errorf("range %s runs backwards", s)
		}
	}
	return lo, hi, nil
}

func port(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}

// validPorts checks mappings already parsed (they may come from CNI's runtimeConfig): ports set, a known
// protocol, an IPv4 host address, no mapping twice. It fills the default protocol.
func validPorts(ports []PortMapping) error {
	for i := range ports {
		p := &ports[i]
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		p.Protocol = strings.ToLower(p.Protocol)
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("port mapping %v: protocol %q is not tcp or udp", p, p.Protocol)
		}
		if p.HostPort == 0 || p.ContainerPort == 0 {
			return fmt.Errorf("port mapping %v: host and container port must be set", p)
		}
		if p.HostIP.IsValid() && !p.HostIP.Is4() {
			return fmt.Errorf("port mapping %v: host address %v is not IPv4", p, p.HostIP)
		}
		if p.HostIP.IsValid() && p.HostIP.IsUnspecified() {
			p.HostIP = netip.Addr{}
		}
		for _, q := range ports[:i] {
			if portsClash(*p, q) {
				return fmt.Errorf("port mapping %v: host port %d/%s is published twice", p, p.HostPort, p.Protocol)
			}
		}
	}
	return nil
}

// portsClash reports whether two mappings claim the same host port: same protocol and port, and the same
// host address or either on every address.
func portsClash(a, b PortMapping) bool {
	return a.Protocol == b.Protocol && a.HostPort == b.HostPort &&
		(!a.HostIP.IsValid() || !b.HostIP.IsValid() || a.HostIP == b.HostIP)
}

// String formats a mapping the way -p takes it.
func (p PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", p.HostPort, p.ContainerPort, p.Protocol)
	if p.HostIP.IsValid() {
		s = p.HostIP.String() + ":" + s
	}
	return s
}

// portConflict returns an error naming the attachment that already publishes one of ports.
func portConflict(ports []PortMapping, others []Attachment) error {
	for _, p := range ports {
		for _, o := range others {
			for _, q := range o.Ports {
				if portsClash(p, q) {
					return fmt.Errorf("port %v: host port %d/%s is already published by container %s on network %s (%v): %w", p, p.HostPort, p.Protocol, o.ContainerID, o.Network, q, ErrInUse)
				}
			}
		}
	}
	return nil
}
