package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"strings"
)

// EtcHosts returns /etc/hosts for a container named hostname with the given attachments: loopback
// entries, then the hostname on each attachment's address.
func EtcHosts(hostname string, atts []Attachment) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost localhost.localdomain\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	seen := map[netip.Addr]bool{}
	for _, a := range atts {
		ip := a.Address.Addr()
		if !ip.IsValid() || seen[ip] {
			continue
		}
		seen[ip] = true
		if hostname != "" {
			fmt.Fprintf(&b, "%s\t%s\n", ip, hostname)
		}
	}
	if len(seen) == 0 && hostname != "" {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	return b.Bytes()
}

// ResolvConf returns the host's resolv.conf for a container: nameservers on loopback (systemd-resolved's
// 127.0.0.53, a local dnsmasq) answer only inside the host's network namespace, so they are dropped; the
// other lines are kept. With no nameserver left the result has none, and the resolver in the container
// falls back to its default.
func ResolvConf(host []byte) []byte {
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(host))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			// A zone suffix (fe80::1%eth0) names a host interface, unusable in the container as well.
			if a, err := netip.ParseAddr(f[1]); err != nil || a.IsLoopback() || a.Zone() != "" {
				continue
			}
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.Bytes()
}
