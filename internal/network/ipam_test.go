package network

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestPickSubnet(t *testing.T) {
	pp := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, tc := range []struct {
		name  string
		taken []netip.Prefix
		want  string
	}{
		{"empty host", nil, "10.90.0.0/24"},
		{"default route ignored", pp("0.0.0.0/0", "192.0.2.0/24"), "10.90.0.0/24"},
		{"first taken by a network", pp("10.90.0.0/24"), "10.90.1.0/24"},
		{"a wide host route", pp("10.90.0.0/23", "10.90.2.0/24"), "10.90.3.0/24"},
		{"a /8 route skips all of 10/8", pp("10.0.0.0/8"), ""},
		{"an IPv6 route is no obstacle", pp("fd00::/8"), "10.90.0.0/24"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := pickSubnet(tc.taken)
			if tc.want == "" {
				if err == nil || !strings.Contains(err.Error(), "--subnet") {
					t.Fatalf("pickSubnet = %v, %v; want an error suggesting --subnet", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParsePrefix(tc.want) {
				t.Fatalf("pickSubnet = %v, %v; want %s", got, err, tc.want)
			}
			for _, r := range reserved {
				if r.Overlaps(got) {
					t.Errorf("%v overlaps reserved %v", got, r)
				}
			}
		})
	}
}

func TestPickBridge(t *testing.T) {
	for _, tc := range []struct {
		used []string
		want string
	}{
		{nil, "knast0"},
		{[]string{"knast0", "eth0"}, "knast1"},
		{[]string{"knast1"}, "knast0"},
		{[]string{"knast0", "knast1", "knast2"}, "knast3"},
	} {
		if got := pickBridge(tc.used); got != tc.want {
			t.Errorf("pickBridge(%v) = %s, want %s", tc.used, got, tc.want)
		}
	}
}

func TestCompleteNetwork(t *testing.T) {
	other := []Network{{Name: "a", Bridge: "knast0", Subnet: netip.MustParsePrefix("10.90.0.0/24")}}
	for _, tc := range []struct {
		name    string
		n       Network
		wantGW  string
		wantErr string
	}{
		{"defaults", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.7/24")}, "10.91.0.1", ""},
		{"explicit gateway", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24"), Gateway: netip.MustParseAddr("10.91.0.254")}, "10.91.0.254", ""},
		{"gateway outside", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24"), Gateway: netip.MustParseAddr("10.92.0.1")}, "", "is not a host address of subnet"},
		{"gateway is broadcast", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24"), Gateway: netip.MustParseAddr("10.91.0.255")}, "", "is not a host address"},
		{"overlap", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.90.0.128/25")}, "", "overlaps network a"},
		{"same bridge", Network{Name: "b", Bridge: "knast0", Subnet: netip.MustParsePrefix("10.91.0.0/24")}, "", "bridge knast0 is used by network a"},
		{"same name", Network{Name: "a", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24")}, "", "already exists"},
		{"bad name", Network{Name: "a/b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24")}, "", "network name"},
		{"long bridge", Network{Name: "b", Bridge: "abcdefghijklmnop", Subnet: netip.MustParsePrefix("10.91.0.0/24")}, "", "1-15 characters"},
		{"ipv6", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("fd00::/64")}, "", "IPv4 CIDR"},
		{"/31 too small", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/31")}, "", "too small"},
		{"bad mtu", Network{Name: "b", Bridge: "knast1", Subnet: netip.MustParsePrefix("10.91.0.0/24"), MTU: 10}, "", "MTU"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := tc.n
			err := completeNetwork(&n, other)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if n.Gateway.String() != tc.wantGW || n.Subnet != n.Subnet.Masked() {
				t.Errorf("got %v gw %v", n.Subnet, n.Gateway)
			}
		})
	}
}

func TestAllocate(t *testing.T) {
	n := &Network{Name: "t", Subnet: netip.MustParsePrefix("10.5.0.0/29"), Gateway: netip.MustParseAddr("10.5.0.1")}
	a := netip.MustParseAddr
	leased := map[netip.Addr]bool{}
	var got []string
	for range 5 {
		ip, err := allocate(n, leased, netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		leased[ip] = true
		got = append(got, ip.String())
	}
	if diff := cmp.Diff([]string{"10.5.0.2", "10.5.0.3", "10.5.0.4", "10.5.0.5", "10.5.0.6"}, got); diff != "" {
		t.Errorf("allocation order (-want +got):\n%s", diff)
	}
	_, err := allocate(n, leased, netip.Addr{})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "network t") || !strings.Contains(err.Error(), "10.5.0.0/29") {
		t.Errorf("exhausted: %v", err)
	}
	delete(leased, a("10.5.0.4"))
	if ip, err := allocate(n, leased, netip.Addr{}); err != nil || ip != a("10.5.0.4") {
		t.Errorf("released address not reused: %v %v", ip, err)
	}
	// A gateway in the middle is skipped.
	mid := &Network{Name: "m", Subnet: netip.MustParsePrefix("10.6.0.0/30"), Gateway: netip.MustParseAddr("10.6.0.1")}
	if ip, err := allocate(mid, nil, netip.Addr{}); err != nil || ip != a("10.6.0.2") {
		t.Errorf("/30: %v %v", ip, err)
	}
	if _, err := allocate(mid, map[netip.Addr]bool{a("10.6.0.2"): true}, netip.Addr{}); !errors.Is(err, ErrExhausted) {
		t.Errorf("/30 with one lease: %v", err)
	}
	for _, tc := range []struct {
		want    string
		wantErr error
		msg     string
	}{
		{"10.5.0.6", nil, ""},
		{"10.5.0.2", ErrInUse, "in use"},
		{"10.5.0.1", nil, "other than the gateway"},
		{"10.5.0.7", nil, "not a host address"},
		{"10.5.0.0", nil, "not a host address"},
		{"10.9.0.9", nil, "not a host address"},
	} {
		ip, err := allocate(n, map[netip.Addr]bool{a("10.5.0.2"): true}, a(tc.want))
		switch {
		case tc.msg == "" && (err != nil || ip != a(tc.want)):
			t.Errorf("request %s: %v %v", tc.want, ip, err)
		case tc.msg != "" && (err == nil || !strings.Contains(err.Error(), tc.msg) || (tc.wantErr != nil && !errors.Is(err, tc.wantErr))):
			t.Errorf("request %s: err %v, want %q", tc.want, err, tc.msg)
		}
	}
}

func TestNames(t *testing.T) {
	if got := macFor(netip.MustParseAddr("10.90.1.2")); got != "0a:58:0a:5a:01:02" {
		t.Errorf("macFor = %s", got)
	}
	seen := map[string]bool{}
	for _, id := range []string{"a", "b", strings.Repeat("x", 200), "c"} {
		for _, ifn := range []string{"eth0", "eth1"} {
			n := hostIfName("net", id, ifn, 0)
			if len(n) > 15 || seen[n] || validIfName("x", n) != nil {
				t.Errorf("hostIfName(%q, %q) = %q: too long, repeated or invalid", id, ifn, n)
			}
			seen[n] = true
			if hostIfName("net", id, ifn, 0) != n {
				t.Errorf("hostIfName is not stable")
			}
			if hostIfName("net", id, ifn, 1) == n || hostIfName("other", id, ifn, 0) == n {
				t.Errorf("salt or network does not change the name")
			}
		}
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"knast", true}, {"my-net_1.x", true}, {"", false}, {"-x", false}, {"a b", false}, {strings.Repeat("a", 65), false}} {
		if err := validName(tc.name); (err == nil) != tc.ok {
			t.Errorf("validName(%q) = %v", tc.name, err)
		}
	}
}

func TestNATTable(t *testing.T) {
	if got := NATTable(""); got != "knast" {
		t.Errorf("default: %s", got)
	}
	if got := NATTable("/var/lib/knast/"); got != "knast" {
		t.Errorf("default with slash: %s", got)
	}
	a, b := NATTable("/tmp/a"), NATTable("/tmp/b")
	if a == b || !strings.HasPrefix(a, "knast-") || len(a) != len("knast-")+8 {
		t.Errorf("per-directory names: %s %s", a, b)
	}
}
