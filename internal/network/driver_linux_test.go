package network

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
)

func TestNFTChains(t *testing.T) {
	p := planNAT(
		[]Network{
			{Name: "b", Bridge: "kb", Subnet: netip.MustParsePrefix("10.2.0.0/24"), IPMasq: false},
			{Name: "a", Bridge: "ka", Subnet: netip.MustParsePrefix("10.1.0.0/24"), IPMasq: true},
		},
		[]Attachment{
			{Network: "a", ContainerID: "x", Address: netip.MustParsePrefix("10.1.0.2/24"), Ports: []PortMapping{{HostPort: 9000, ContainerPort: 90, Protocol: "udp"}, {HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80, ContainerPort: 8080, Protocol: "tcp"}}},
			{Network: "gone", ContainerID: "y", Address: netip.MustParsePrefix("10.9.0.2/24"), Ports: []PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}},
		})
	if len(p.masq) != 1 || p.masq[0].String() != "10.1.0.0/24" || len(p.nets) != 2 || p.nets[0].bridge != "ka" {
		t.Errorf("plan nets: %+v", p)
	}
	if len(p.dnat) != 2 || p.dnat[0].proto != "tcp" || p.dnat[0].dest.String() != "10.1.0.2:8080" || p.dnat[1].hostPort != 9000 {
		t.Errorf("plan dnat: %+v", p.dnat)
	}
	chains := nftChains(p)
	counts := map[string]int{}
	for _, c := range chains {
		counts[c.name] = len(c.rules)
	}
	// 1 masquerade + 2 per network in postrouting, 3 per network in forward, a DNAT per port in both nat hooks.
	want := map[string]int{"prerouting": 2, "output": 2, "postrouting": 5, "forward": 6}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Errorf("rules per chain = %v, want %v", counts, want)
	}
	// A port bound to one host address matches that address, not fib local.
	first := chains[0].rules[0]
	if _, ok := first[0].(*expr.Payload); !ok {
		t.Errorf("host-address DNAT starts with %T", first[0])
	}
	if _, ok := chains[0].rules[1][0].(*expr.Fib); !ok {
		t.Errorf("any-address DNAT starts with %T", chains[0].rules[1][0])
	}
	if nat, ok := first[len(first)-1].(*expr.NAT); !ok || nat.Type != expr.NATTypeDestNAT {
		t.Errorf("DNAT rule ends with %T", first[len(first)-1])
	}
	if !planNAT(nil, nil).empty() {
		t.Error("plan without networks is not empty")
	}
}

// TestLinuxDriver drives the real kernel: a bridge, a pair into a namespace made here, the NAT table
// (rebuilt idempotently), check, detach and removal, with nothing left.
func TestLinuxDriver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (netlink, nftables)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("the test checks the kernel with %s (apt-get install iproute2 nftables): %v", tool, err)
		}
	}
	ctx := context.Background()
	ns := fmt.Sprintf("kntest-drv-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	dir := t.TempDir()
	m := New(Options{StorageDir: dir})
	table := NATTable(dir)
	n, err := m.Create(ctx, CreateOptions{Name: "drv", Subnet: netip.MustParsePrefix("10.231.250.0/24"), Bridge: "kntdrv0", MTU: 1400})
	if err != nil {
		t.Fatal(err)
	}
	if n.Gateway.String() != "10.231.250.1" || n.MTU != 1400 {
		t.Errorf("network: %+v", n)
	}
	t.Cleanup(func() { m.Remove(context.Background(), "drv") })
	a, err := m.Attach(ctx, AttachOptions{Network: "drv", ContainerID: "drvtest", NetNS: "/run/netns/" + ns, IfName: "eth7",
		Ports: []PortMapping{{HostPort: 18080, ContainerPort: 80, Protocol: "tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.DetachAll(context.Background(), "drvtest") })
	in := run(t, "ip", "-n", ns, "-o", "addr", "show", "dev", "eth7")
	if !strings.Contains(in, "10.231.250.2/24") {
		t.Errorf("address in the namespace: %s", in)
	}
	link := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", "eth7")
	if !strings.Contains(link, "mtu 1400") || !strings.Contains(link, a.MAC) || !strings.Contains(link, ",UP") {
		t.Errorf("link in the namespace: %s", link)
	}
	if r := run(t, "ip", "-n", ns, "route", "show", "default"); !strings.Contains(r, "via 10.231.250.1 dev eth7") {
		t.Errorf("default route: %s", r)
	}
	if lo := run(t, "ip", "-n", ns, "-o", "link", "show", "dev", "lo"); !strings.Contains(lo, "UP") {
		t.Errorf("lo: %s", lo)
	}
	if host := run(t, "ip", "-o", "link", "show", "dev", a.HostIf); !strings.Contains(host, "master kntdrv0") {
		t.Errorf("host end: %s", host)
	}
	if err := m.Check(ctx, "drv", "drvtest", "eth7"); err != nil {
		t.Errorf("Check: %v", err)
	}
	before := run(t, "nft", "list", "table", "ip", table)
	for _, want := range []string{
		"ip saddr 10.231.250.0/24 ip daddr != 10.231.250.0/24 ip daddr != 224.0.0.0/4 masquerade",
		"fib daddr type local tcp dport 18080 dnat to 10.231.250.2:80",
		`iifname "kntdrv0" accept`,
	} {
		if !strings.Contains(before, want) {
			t.Errorf("table lacks %q:\n%s", want, before)
		}
	}
	t.Logf("nft list table ip %s:\n%s", table, before)
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if after := run(t, "nft", "list", "table", "ip", table); after != before {
		t.Errorf("sync is not idempotent:\n%s\nthen:\n%s", before, after)
	}
	if err := m.Detach(ctx, "drv", "drvtest", "eth7"); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "dev", a.HostIf).CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("host end left: %s", out)
	}
	if err := m.Check(ctx, "drv", "drvtest", "eth7"); err == nil {
		t.Error("Check after detach succeeded")
	}
	if tab := run(t, "nft", "list", "table", "ip", table); strings.Contains(tab, "dnat to") {
		t.Errorf("DNAT left after detach:\n%s", tab)
	}
	if err := m.Remove(ctx, "drv"); err != nil {
		t.Fatal(err)
	}
	if out, _ := exec.Command("ip", "-o", "link", "show", "dev", "kntdrv0").CombinedOutput(); !strings.Contains(string(out), "does not exist") {
		t.Errorf("bridge left: %s", out)
	}
	if tabs := run(t, "nft", "list", "tables"); strings.Contains(tabs, table+"\n") {
		t.Errorf("table %s left: %s", table, tabs)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestForeignForwardDrop checks, in a network namespace of its own (nftables state is per namespace, so
// the host's forwarding is never touched), that a drop policy in iptables' `ip filter FORWARD` gets
// knast's accept rules at its head, that a rebuild does not duplicate them, and that they leave with the
// last network while the chain's other rules stay.
func TestForeignForwardDrop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces, nftables)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skipf("the test checks the rules with nft (apt-get install nftables): %v", err)
	}
	ns := fmt.Sprintf("kntest-fwd-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run(t, "ip", "netns", "exec", ns, "nft", "add table ip filter; add chain ip filter FORWARD { type filter hook forward priority 0; policy drop; }; add rule ip filter FORWARD iifname \"other0\" accept")
	d := &linuxDriver{log: slog.New(slog.DiscardHandler), table: "knast-fwdtest"}
	nets := []Network{{Name: "a", Bridge: "kfwd0", Subnet: netip.MustParsePrefix("10.231.251.0/24"), IPMasq: true}}
	inNS := func(nets []Network) {
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
		serr := d.syncNAT(context.Background(), nets, nil)
		if err := netns.Set(orig); err != nil {
			t.Fatalf("switch back: %v", err) // the thread stays locked and dies with the test goroutine
		}
		runtime.UnlockOSThread()
		if serr != nil {
			t.Fatal(serr)
		}
	}
	chain := func() string {
		return run(t, "ip", "netns", "exec", ns, "nft", "list", "chain", "ip", "filter", "FORWARD")
	}
	for range 2 {
		inNS(nets)
		got := chain()
		if strings.Count(got, `iifname "kfwd0" accept`) != 1 || strings.Count(got, `oifname "kfwd0"`) != 2 || !strings.Contains(got, `iifname "other0" accept`) {
			t.Fatalf("FORWARD after sync:\n%s", got)
		}
		if !strings.Contains(run(t, "ip", "netns", "exec", ns, "nft", "list", "tables"), "knast-fwdtest") {
			t.Fatal("knast's own table is missing")
		}
	}
	inNS(nil)
	if got := chain(); strings.Contains(got, "kfwd0") || !strings.Contains(got, `iifname "other0" accept`) {
		t.Errorf("FORWARD after the last network:\n%s", got)
	}
	if tabs := run(t, "ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Contains(tabs, "knast-fwdtest") {
		t.Errorf("table left: %s", tabs)
	}
}
