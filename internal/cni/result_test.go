package cni

import (
	"bytes"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/google/go-cmp/cmp"

	"github.com/knast/knast/internal/network"
)

var (
	testNet = network.Network{Name: "n", Bridge: "knastcni9", Subnet: netip.MustParsePrefix("10.232.9.0/24"),
		Gateway: netip.MustParseAddr("10.232.9.1"), MTU: 1400}
	testAtt = network.Attachment{Network: "n", ContainerID: "c1", IfName: "eth0", HostIf: "knv0011223344",
		NetNS: "/run/netns/t1", Address: netip.MustParsePrefix("10.232.9.2/24"), Gateway: netip.MustParseAddr("10.232.9.1"),
		MAC: "0a:58:0a:e8:09:02"}
)

func TestBuildResultJSON(t *testing.T) {
	c := &Config{CNIVersion: "1.1.0", Name: "n", DNS: types.DNS{Nameservers: []string{"10.232.9.1"}, Search: []string{"example"}}}
	r := BuildResult(c, testNet, testAtt, map[string]string{"knastcni9": "aa:bb:cc:dd:ee:01"})
	var buf bytes.Buffer
	if err := r.PrintTo(&buf); err != nil {
		t.Fatalf("PrintTo: %v", err)
	}
	var got any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("result is not JSON: %v\n%s", err, buf.String())
	}
	// The JSON a runtime reads, as the CNI spec lays it out.
	want := map[string]any{
		"cniVersion": "1.1.0",
		"interfaces": []any{
			map[string]any{"name": "knastcni9", "mac": "aa:bb:cc:dd:ee:01"},
			map[string]any{"name": "knv0011223344"},
			map[string]any{"name": "eth0", "mac": "0a:58:0a:e8:09:02", "mtu": float64(1400), "sandbox": "/run/netns/t1"},
		},
		"ips":    []any{map[string]any{"interface": float64(2), "address": "10.232.9.2/24", "gateway": "10.232.9.1"}},
		"routes": []any{map[string]any{"dst": "0.0.0.0/0", "gw": "10.232.9.1"}},
		"dns":    map[string]any{"nameservers": []any{"10.232.9.1"}, "search": []any{"example"}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("result JSON (-want +got):\n%s", d)
	}
}

func TestBuildResultVersions(t *testing.T) {
	// Older configs get the result in their own version; 0.3.x/0.4.0 results carry "version" per IP.
	for _, v := range Versions.SupportedVersions() {
		r, err := BuildResult(&Config{CNIVersion: v}, testNet, testAtt, nil).GetAsVersion(v)
		if err != nil {
			t.Errorf("GetAsVersion(%s): %v", v, err)
			continue
		}
		var buf bytes.Buffer
		if err := r.PrintTo(&buf); err != nil {
			t.Errorf("%s: PrintTo: %v", v, err)
			continue
		}
		if !strings.Contains(buf.String(), `"cniVersion": "`+v+`"`) || !strings.Contains(buf.String(), "10.232.9.2/24") {
			t.Errorf("%s: result %s lacks its version or the address", v, buf.String())
		}
		if strings.HasPrefix(v, "0.") != strings.Contains(buf.String(), `"version": "4"`) {
			t.Errorf("%s: result %s: per-IP version field wrong for this spec version", v, buf.String())
		}
	}
}

func TestCheckResult(t *testing.T) {
	good := func() *types100.Result {
		return BuildResult(&Config{}, testNet, testAtt, nil)
	}
	tests := []struct {
		name   string
		prev   func() *types100.Result
		ifName string
		netns  string
		att    func(a *network.Attachment)
		want   string // substring of the error; empty: pass
	}{
		{name: "own result", prev: good},
		{name: "MAC case differs only", prev: func() *types100.Result {
			r := good()
			r.Interfaces[ifContainer].Mac = strings.ToUpper(testAtt.MAC)
			return r
		}},
		{name: "IPv4 address in 16-byte form, no interface index", prev: func() *types100.Result {
			r := good()
			r.IPs[0].Address.IP = net.ParseIP("10.232.9.2")
			r.IPs[0].Interface = nil
			return r
		}},
		{name: "no prevResult", prev: func() *types100.Result { return nil }, want: "needs a prevResult"},
		{name: "no such interface", prev: good, ifName: "eth1", want: "no interface eth1"},
		{name: "other netns", prev: good, netns: "/run/netns/other", want: "CNI_NETNS /run/netns/other"},
		{name: "attachment in another netns", prev: good, att: func(a *network.Attachment) { a.NetNS = "/run/netns/old" }, want: "attached in netns /run/netns/old"},
		{name: "other MAC", prev: good, att: func(a *network.Attachment) { a.MAC = "0a:58:00:00:00:01" }, want: "attachment MAC 0a:58:00:00:00:01"},
		{name: "other address", prev: good, att: func(a *network.Attachment) { a.Address = netip.MustParsePrefix("10.232.9.3/24") },
			want: "prevResult addresses of eth0 [10.232.9.2/24], attachment address 10.232.9.3/24"},
		{name: "other gateway", prev: good, att: func(a *network.Attachment) { a.Gateway = netip.MustParseAddr("10.232.9.254") }, want: "prevResult gateway 10.232.9.1"},
		{name: "address on another interface", prev: func() *types100.Result {
			r := good()
			r.IPs[0].Interface = types100.Int(ifHost)
			return r
		}, want: "prevResult addresses of eth0 []"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ifName, netns, att := "eth0", testAtt.NetNS, testAtt
			if tt.ifName != "" {
				ifName = tt.ifName
			}
			if tt.netns != "" {
				netns = tt.netns
			}
			if tt.att != nil {
				tt.att(&att)
			}
			err := CheckResult(tt.prev(), ifName, netns, att)
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckResult = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckResult = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
