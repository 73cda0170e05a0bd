package network

import (
	"strings"
	"testing"
)

// FuzzParsePortMapping feeds arbitrary `-p` values to ParsePortMapping: no panic, errors name the
// value, and every mapping it returns has real ports, tcp or udp, an IPv4 or no host address, and
// no more mappings than a port range can hold.
func FuzzParsePortMapping(f *testing.F) {
	for _, s := range []string{"8080:80", "127.0.0.1:8080-8081:80-81/udp", "[::1]:1:1", "0.0.0.0:65535:0/tcp",
		"1-65535:1-65535", "80:80/sctp", ":80", "99999:1", "-1:1", "1-0:1-0", "a:b:c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := ParsePortMapping(s)
		if err != nil {
			if !strings.Contains(err.Error(), "port mapping ") {
				t.Fatalf("error does not name the mapping: %v", err)
			}
			return
		}
		if len(ms) == 0 || len(ms) > 65535 {
			t.Fatalf("%q gives %d mappings", s, len(ms))
		}
		for _, m := range ms {
			if m.HostPort == 0 || m.ContainerPort == 0 || (m.Protocol != "tcp" && m.Protocol != "udp") ||
				(m.HostIP.IsValid() && !m.HostIP.Is4()) {
				t.Fatalf("%q gives mapping %+v", s, m)
			}
		}
	})
}
