package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParsePortMapping(t *testing.T) {
	pm := func(ip string, h, c uint16, proto string) PortMapping {
		p := PortMapping{HostPort: h, ContainerPort: c, Protocol: proto}
		if ip != "" {
			p.HostIP = netip.MustParseAddr(ip)
		}
		return p
	}
	for _, tc := range []struct {
		in      string
		want    []PortMapping
		wantErr string
	}{
		{"8080:80", []PortMapping{pm("", 8080, 80, "tcp")}, ""},
		{"8080:80/udp", []PortMapping{pm("", 8080, 80, "udp")}, ""},
		{"8080:80/TCP", []PortMapping{pm("", 8080, 80, "tcp")}, ""},
		{"127.0.0.1:8080:80", []PortMapping{pm("127.0.0.1", 8080, 80, "tcp")}, ""},
		{"0.0.0.0:8080:80", []PortMapping{pm("", 8080, 80, "tcp")}, ""},
		{"8080-8081:80-81/udp", []PortMapping{pm("", 8080, 80, "udp"), pm("", 8081, 81, "udp")}, ""},
		{"80", nil, "no host port"},
		{"8080:80/sctp", nil, "not tcp or udp"},
		{"x:8080:80", nil, "not an IPv4 address"},
		{"::1:8080:80", nil, "not an IPv4 address"},
		{"0:80", nil, "not a port number"},
		{"8080:70000", nil, "not a port number"},
		{"8080-8082:80-81", nil, "differ in length"},
		{"8082-8080:80-82", nil, "backwards"},
		{":80", nil, "not a port number"},
	} {
		got, err := ParsePortMapping(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestPortChecks(t *testing.T) {
	p := func(s string) PortMapping {
		m, err := ParsePortMapping(s)
		if err != nil {
			t.Fatal(err)
		}
		return m[0]
	}
	for _, tc := range []struct {
		a, b  string
		clash bool
	}{
		{"8080:80", "8080:81", true},
		{"8080:80", "8080:80/udp", false},
		{"127.0.0.1:8080:80", "8080:80", true},
		{"127.0.0.1:8080:80", "127.0.0.2:8080:80", false},
		{"8081:80", "8080:80", false},
	} {
		if got := portsClash(p(tc.a), p(tc.b)); got != tc.clash {
			t.Errorf("portsClash(%s, %s) = %v", tc.a, tc.b, got)
		}
	}
	if err := validPorts([]PortMapping{p("8080:80"), p("8080:81")}); err == nil || !strings.Contains(err.Error(), "published twice") {
		t.Errorf("twice: %v", err)
	}
	ports := []PortMapping{{HostPort: 1, ContainerPort: 2}}
	if err := validPorts(ports); err != nil || ports[0].Protocol != "tcp" {
		t.Errorf("default protocol: %v %+v", err, ports)
	}
	for _, bad := range [][]PortMapping{
		{{HostPort: 0, ContainerPort: 2, Protocol: "tcp"}},
		{{HostPort: 1, ContainerPort: 2, Protocol: "icmp"}},
		{{HostIP: netip.MustParseAddr("::1"), HostPort: 1, ContainerPort: 2}},
	} {
		if err := validPorts(bad); err == nil {
			t.Errorf("validPorts(%+v) accepted", bad)
		}
	}
	others := []Attachment{{ContainerID: "web", Network: "n", Ports: []PortMapping{p("8080:80")}}}
	err := portConflict([]PortMapping{p("8080:9000")}, others)
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "container web") {
		t.Errorf("portConflict: %v", err)
	}
	if err := portConflict([]PortMapping{p("8081:80")}, others); err != nil {
		t.Errorf("no conflict: %v", err)
	}
}

func TestEtcHostsAndResolvConf(t *testing.T) {
	atts := []Attachment{
		{Address: netip.MustParsePrefix("10.90.0.2/24")},
		{Address: netip.MustParsePrefix("10.91.0.5/24")},
	}
	want := "127.0.0.1\tlocalhost localhost.localdomain\n::1\tlocalhost ip6-localhost ip6-loopback\n10.90.0.2\tweb\n10.91.0.5\tweb\n"
	if got := string(EtcHosts("web", atts)); got != want {
		t.Errorf("EtcHosts:\n%s\nwant:\n%s", got, want)
	}
	if got := string(EtcHosts("solo", nil)); !strings.HasSuffix(got, "127.0.1.1\tsolo\n") {
		t.Errorf("EtcHosts without networks: %q", got)
	}
	for _, tc := range []struct{ in, want string }{
		{"nameserver 127.0.0.53\noptions edns0\nsearch example.org\n", "options edns0\nsearch example.org\n"},
		{"# c\nnameserver 192.0.2.53\nnameserver ::1\nnameserver fe80::1%eth0\n", "# c\nnameserver 192.0.2.53\n"},
		{"nameserver 127.0.0.1", ""},
		{"", ""},
	} {
		if got := string(ResolvConf([]byte(tc.in))); got != tc.want {
			t.Errorf("ResolvConf(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
