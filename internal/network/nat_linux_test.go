package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
)

func TestPlanFingerprint(t *testing.T) {
	net1 := Network{Name: "a", Bridge: "ka", Subnet: netip.MustParsePrefix("10.1.0.0/24"), IPMasq: true}
	att := func(id string, ports ...PortMapping) Attachment {
		return Attachment{Network: "a", ContainerID: id, Address: netip.MustParsePrefix("10.1.0.2/24"), Ports: ports}
	}
	base := planFingerprint(planNAT([]Network{net1}, nil))
	noMasq := net1
	noMasq.IPMasq = false
	other := net1
	other.Bridge = "kb"
	for _, tc := range []struct {
		name string
		nets []Network
		atts []Attachment
		same bool
	}{
		{"same network", []Network{net1}, nil, true},
		{"attachment without ports", []Network{net1}, []Attachment{att("x")}, true},
		{"attachment of an unknown network", []Network{net1}, []Attachment{{Network: "gone", Ports: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}}, true},
		{"published port", []Network{net1}, []Attachment{att("x", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"})}, false},
		{"udp instead of tcp", []Network{net1}, []Attachment{att("x", PortMapping{HostPort: 8080, ContainerPort: 80, Protocol: "udp"})}, false},
		{"no masquerade", []Network{noMasq}, nil, false},
		{"other bridge", []Network{other}, nil, false},
		{"no network", nil, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := planFingerprint(planNAT(tc.nets, tc.atts))
			if (got == base) != tc.same {
				t.Errorf("fingerprint %s vs base %s: same = %v, want %v", got, base, got == base, tc.same)
			}
		})
	}
	if got := nftComment("ab"); string(got) != "\x00\x03ab\x00" {
		t.Errorf("nftComment = %q", got)
	}
}

// TestSyncNATIfChanged checks, in a network namespace of its own, that an unchanged plan leaves the
// table alone (same kernel handle), that a changed plan, a chain flushed by hand and a forced sync
// rebuild it, and that an empty plan removes it.
func TestSyncNATIfChanged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("the test checks the rules with nft (apt-get install nftables): %v", err)
	}
	ns := fmt.Sprintf("kntest-natsk-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	const table = "knast-skiptest"
	d := &linuxDriver{log: slog.New(slog.DiscardHandler), table: table}
	inNS := func(f func() error) {
		t.Helper()
		target, err := netns.GetFromName(ns)
		if err != nil {
			t.Fatal(err)
		}
		defer target.Close()
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		defer orig.Close()
		if err := netns.Set(target); err != nil {
			t.Fatal(err)
		}
		ferr := f()
		if err := netns.Set(orig); err != nil {
			t.Fatalf("switch back: %v", err) // the thread stays locked and dies with the test goroutine
		}
		runtime.UnlockOSThread()
		if ferr != nil {
			t.Fatal(ferr)
		}
	}
	handleRE := regexp.MustCompile(`table ip ` + table + ` \{ # handle (\d+)`)
	list := func() (handle, body string) {
		out := run(t, "ip", "netns", "exec", ns, "nft", "-a", "list", "table", "ip", table)
		m := handleRE.FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no table handle in:\n%s", out)
		}
		return m[1], out
	}
	nets := []Network{{Name: "a", Bridge: "kskip0", Subnet: netip.MustParsePrefix("10.231.252.0/24"), IPMasq: true}}
	plain := []Attachment{{Network: "a", ContainerID: "x", Address: netip.MustParsePrefix("10.231.252.2/24")}}
	ported := []Attachment{{Network: "a", ContainerID: "x", Address: netip.MustParsePrefix("10.231.252.2/24"),
		Ports: []PortMapping{{HostPort: 18081, ContainerPort: 80, Protocol: "tcp"}}}}
	ifChanged := func(atts []Attachment) func() error {
		return func() error { return d.syncNATIfChanged(context.Background(), nets, atts) }
	}

	inNS(ifChanged(nil))
	h1, body := list()
	if !strings.Contains(body, `comment "knast plan `) || !strings.Contains(body, "masquerade") {
		t.Fatalf("first sync:\n%s", body)
	}
	inNS(ifChanged(plain))
	if h, _ := list(); h != h1 {
		t.Errorf("an attachment without ports rebuilt the table (handle %s, was %s)", h, h1)
	}
	inNS(ifChanged(ported))
	h2, body := list()
	if h2 == h1 || !strings.Contains(body, "dnat to 10.231.252.2:80") {
		t.Errorf("a published port did not rebuild the table (handle %s, was %s):\n%s", h2, h1, body)
	}
	run(t, "ip", "netns", "exec", ns, "nft", "flush", "chain", "ip", table, "postrouting")
	inNS(ifChanged(ported))
	h3, body := list()
	if h3 == h2 || !strings.Contains(body, "masquerade") {
		t.Errorf("a flushed chain was not repaired (handle %s, was %s):\n%s", h3, h2, body)
	}
	inNS(func() error { return d.syncNAT(context.Background(), nets, ported) })
	if h, _ := list(); h == h3 {
		t.Errorf("a forced sync kept the table (handle %s)", h)
	}
	inNS(func() error { return d.syncNATIfChanged(context.Background(), nil, nil) })
	if tabs := run(t, "ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Contains(tabs, table) {
		t.Errorf("table left with no network: %s", tabs)
	}
}
