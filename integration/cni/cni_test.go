//go:build linux

package cni

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func TestVersionAndValidate(t *testing.T) {
	e := newEnv(t, 40, "")
	ctx := context.Background()
	info, err := e.cni.GetVersionInfo(ctx, "knast-cni")
	if err != nil {
		t.Fatalf("VERSION: %v", err)
	}
	for _, v := range []string{"1.1.0", "1.0.0", "0.4.0"} {
		if !slices.Contains(info.SupportedVersions(), v) {
			t.Errorf("VERSION lists %q, want %s among them", info.SupportedVersions(), v)
		}
	}
	caps, err := e.cni.ValidateNetworkList(ctx, e.list)
	if err != nil {
		t.Fatalf("ValidateNetworkList: %v", err)
	}
	if !slices.Contains(caps, "portMappings") {
		t.Errorf("ValidateNetworkList capabilities = %q, want portMappings", caps)
	}
	if err := e.cni.GetStatusNetworkList(ctx, e.list); err != nil {
		t.Errorf("STATUS before any ADD: %v", err)
	}
}

func TestAddCheckDel(t *testing.T) {
	e := newEnv(t, 41, `,"mtu":1400`)
	ns1, p1 := newNetns(t, "a1")
	ns2, p2 := newNetns(t, "a2")
	rt1, rt2 := e.rt("kcnit-c1", p1), e.rt("kcnit-c2", p2)
	r1 := e.add(rt1)
	r2 := e.add(rt2)

	addr1, addr2 := containerAddr(t, r1), containerAddr(t, r2)
	for _, a := range []string{addr1, addr2} {
		if !e.subnet.Contains(netip.MustParseAddr(a)) {
			t.Errorf("address %s outside %s", a, e.subnet)
		}
	}
	if addr1 == addr2 {
		t.Fatalf("both containers got %s", addr1)
	}
	gw := r1.IPs[0].Gateway.String()
	if len(r1.Routes) != 1 || r1.Routes[0].Dst.String() != "0.0.0.0/0" || r1.Routes[0].GW.String() != gw {
		t.Errorf("routes = %+v, want one default via %s", r1.Routes, gw)
	}
	if r1.Interfaces[0].Name != e.bridge {
		t.Errorf("first interface %q, want the bridge %s", r1.Interfaces[0].Name, e.bridge)
	}
	l, err := linkIn(ns1, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if l.OperState != "UP" && !slices.Contains(l.Flags, "UP") || l.MTU != 1400 || len(l.AddrInfo) == 0 || l.AddrInfo[0].Local != addr1 || l.AddrInfo[0].PrefixLen != 24 {
		t.Errorf("eth0 in %s = %+v, want up, MTU 1400, %s/24", ns1, l, addr1)
	}
	if got := defaultGateway(ns1); got != gw {
		t.Errorf("default route in %s via %q, want %s", ns1, got, gw)
	}
	if lo, err := linkIn(ns1, "lo"); err != nil || !slices.Contains(lo.Flags, "UP") {
		t.Errorf("lo in %s not up: %+v %v", ns1, lo, err)
	}
	host1 := hostIf(t, r1, e.bridge)
	if !hostHasLink(host1) {
		t.Errorf("host end %s missing", host1)
	}

	// The two containers reach each other over the bridge, and the gateway.
	for _, c := range []struct{ ns, to string }{{ns1, addr2}, {ns2, addr1}, {ns1, gw}} {
		if out, err := inNetns(c.ns, "busybox", "ping", "-c", "1", "-W", "3", c.to); err != nil {
			t.Errorf("ping %s from %s: %v\n%s", c.to, c.ns, err, out)
		}
	}

	ctx := context.Background()
	if err := e.cni.CheckNetworkList(ctx, e.list, rt1); err != nil {
		t.Errorf("CHECK c1: %v", err)
	}
	if err := e.cni.GetStatusNetworkList(ctx, e.list); err != nil {
		t.Errorf("STATUS with the network in use: %v", err)
	}
	// Deleting the container's link makes CHECK fail.
	if out, err := exec.Command("ip", "-n", ns2, "link", "del", "eth0").CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v: %s", err, out)
	}
	if err := e.cni.CheckNetworkList(ctx, e.list, rt2); err == nil {
		t.Errorf("CHECK c2 passed after its link was deleted")
	}

	// DEL twice is fine; so is DEL after the netns is gone; leases and links go.
	e.del(rt1)
	e.del(rt1)
	deleteNetns(t, ns2)
	e.del(rt2)
	e.del(&libcni.RuntimeConf{ContainerID: "kcnit-never", IfName: "eth0"})
	if hostHasLink(host1) {
		t.Errorf("host end %s still there after DEL", host1)
	}
	if _, err := linkIn(ns1, "eth0"); err == nil {
		t.Errorf("eth0 still in %s after DEL", ns1)
	}
	if ids := e.leases(); len(ids) != 0 {
		t.Errorf("leases after DEL: %q", ids)
	}
	if rules := e.nftRules(); strings.Contains(rules, addr1) || strings.Contains(rules, addr2) {
		t.Errorf("nft rules still name a deleted container:\n%s", rules)
	}
	if err := e.cni.CheckNetworkList(ctx, e.list, rt1); err == nil {
		t.Errorf("CHECK after DEL passed")
	}
}

func TestPortMappings(t *testing.T) {
	e := newEnv(t, 42, "")
	nsSrv, pSrv := newNetns(t, "p1")
	nsCli, pCli := newNetns(t, "p2")
	hostPort := freePort(t)
	rtSrv := e.rt("kcnit-srv", pSrv, map[string]any{"hostPort": hostPort, "containerPort": 8080, "protocol": "tcp"})
	r := e.add(rtSrv)
	e.add(e.rt("kcnit-cli", pCli))
	srvAddr := containerAddr(t, r)

	const token = "knast-cni-port-test"
	www := t.TempDir()
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte(token), 0o644); err != nil {
		t.Fatal(err)
	}
	httpd := exec.Command("ip", "netns", "exec", nsSrv, "busybox", "httpd", "-f", "-p", "8080", "-h", www)
	if err := httpd.Start(); err != nil {
		t.Fatalf("start httpd: %v", err)
	}
	t.Cleanup(func() { httpd.Process.Kill(); httpd.Wait() })

	if rules := e.nftRules(); !strings.Contains(rules, srvAddr) {
		t.Errorf("nft table has no rule for %s:\n%s", srvAddr, rules)
	}
	targets := []string{"127.0.0.1"}
	if a := hostAddr(e.subnet); a != "" {
		targets = append(targets, a)
	}
	targets = append(targets, r.IPs[0].Gateway.String())
	for _, h := range targets {
		url := fmt.Sprintf("http://%s:%d/", h, hostPort)
		if body, err := httpGet(url); err != nil || !strings.Contains(body, token) {
			t.Errorf("GET %s from the host = %q, %v; want the container's page", url, body, err)
		}
		// Hairpin: another container reaches the published port through the host's address.
		if h == "127.0.0.1" {
			continue
		}
		if out, err := inNetns(nsCli, "busybox", "wget", "-q", "-O", "-", url); err != nil || !strings.Contains(out, token) {
			t.Errorf("wget %s from another container = %q, %v", url, out, err)
		}
	}

	e.del(rtSrv)
	if rules := e.nftRules(); strings.Contains(rules, srvAddr) || strings.Contains(rules, fmt.Sprint(hostPort)) {
		t.Errorf("nft rules still publish the port after DEL:\n%s", rules)
	}
	if body, err := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", hostPort)); err == nil {
		t.Errorf("port %d still answers after DEL: %q", hostPort, body)
	}
}

func TestGC(t *testing.T) {
	e := newEnv(t, 43, "")
	_, pa := newNetns(t, "g1")
	_, pb := newNetns(t, "g2")
	ra := e.add(e.rt("kcnit-keep", pa))
	rb := e.add(e.rt("kcnit-stale", pb))

	// A runtime whose cache does not know the attachments (a restarted one), so the plugin's own GC must
	// find the stale one: libcni only sends it the valid list.
	fresh := libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	ctx := context.Background()
	if err := fresh.GCNetworkList(ctx, e.list, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "kcnit-keep", IfName: "eth0"}}}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if got := e.leases(); !slices.Equal(got, []string{"kcnit-keep"}) {
		t.Errorf("leases after GC = %q, want only kcnit-keep", got)
	}
	if !hostHasLink(hostIf(t, ra, e.bridge)) {
		t.Errorf("GC removed the valid attachment's link")
	}
	if hostHasLink(hostIf(t, rb, e.bridge)) {
		t.Errorf("GC left the stale attachment's link")
	}
	// An empty valid list clears the network.
	if err := fresh.GCNetworkList(ctx, e.list, &libcni.GCArgs{}); err != nil {
		t.Fatalf("GC with nothing valid: %v", err)
	}
	if got := e.leases(); len(got) != 0 {
		t.Errorf("leases after GC with nothing valid = %q", got)
	}
}

func TestErrors(t *testing.T) {
	e := newEnv(t, 44, "")
	_, p := newNetns(t, "e1")
	ctx := context.Background()
	e.add(e.rt("kcnit-e1", p))
	tests := []struct {
		name string
		conf string
		op   func(list *libcni.NetworkConfigList) error
		want uint
	}{
		{name: "ADD without subnet", conf: `"bridge":"kcnitx"`, want: types.ErrInvalidNetworkConfig,
			op: func(l *libcni.NetworkConfigList) error {
				_, err := e.cni.AddNetworkList(ctx, l, e.rt("kcnit-e2", p))
				return err
			}},
		{name: "ADD to the network with another subnet", conf: fmt.Sprintf(`"bridge":%q,"subnet":"10.232.45.0/24","dataDir":%q`, e.bridge, e.dataDir),
			want: types.ErrInvalidNetworkConfig, op: func(l *libcni.NetworkConfigList) error {
				_, err := e.cni.AddNetworkList(ctx, l, e.rt("kcnit-e2", p))
				return err
			}},
		{name: "STATUS of the network with another subnet", conf: fmt.Sprintf(`"subnet":"10.232.45.0/24","dataDir":%q`, e.dataDir),
			want: types.ErrInvalidNetworkConfig, op: func(l *libcni.NetworkConfigList) error { return e.cni.GetStatusNetworkList(ctx, l) }},
		{name: "ADD with an unknown protocol", conf: fmt.Sprintf(`"subnet":%q,"dataDir":%q,"capabilities":{"portMappings":true}`, e.subnet, e.dataDir),
			want: types.ErrInvalidNetworkConfig, op: func(l *libcni.NetworkConfigList) error {
				_, err := e.cni.AddNetworkList(ctx, l, e.rt("kcnit-e2", p, map[string]any{"hostPort": 1, "containerPort": 1, "protocol": "sctp"}))
				return err
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list, err := libcni.ConfListFromBytes([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"knast-cni",%s}]}`, e.name, tt.conf)))
			if err != nil {
				t.Fatal(err)
			}
			if err := tt.op(list); cniCode(err) != tt.want {
				t.Errorf("error = %v (code %d), want code %d", err, cniCode(err), tt.want)
			}
		})
	}
	if got := e.leases(); !slices.Equal(got, []string{"kcnit-e1"}) {
		t.Errorf("leases after refused ADDs = %q, want only kcnit-e1", got)
	}
	e.del(e.rt("kcnit-e1", p))
}

// freePort returns a TCP port nothing listens on now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostAddr is a global IPv4 address of the host outside subnet (the host's own, so traffic to it stays
// on this machine), "" when there is none.
func hostAddr(subnet netip.Prefix) string {
	itfs, err := net.Interfaces()
	if err != nil {
		return ""
	}
	for _, itf := range itfs {
		if itf.Flags&net.FlagUp == 0 || itf.Flags&net.FlagLoopback != 0 || strings.HasPrefix(itf.Name, "kcnit") {
			continue
		}
		addrs, _ := itf.Addrs()
		for _, a := range addrs {
			p, err := netip.ParsePrefix(a.String())
			if err == nil && p.Addr().Is4() && p.Addr().IsGlobalUnicast() && !subnet.Contains(p.Addr()) &&
				!netip.MustParsePrefix("10.232.0.0/16").Contains(p.Addr()) {
				return p.Addr().String()
			}
		}
	}
	return ""
}

// httpGet fetches url, retrying briefly while the server starts.
func httpGet(url string) (string, error) {
	c := &http.Client{Timeout: 3 * time.Second}
	var err error
	for range 10 {
		var resp *http.Response
		resp, err = c.Get(url)
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			return string(b), rerr
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", err
}
