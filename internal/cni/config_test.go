package cni

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/google/go-cmp/cmp"

	"github.com/knast/knast/internal/network"
)

func TestParseConfig(t *testing.T) {
	yes := true
	tests := []struct {
		name     string
		conf     string
		args     string
		want     *Config // compared without PrevResult
		wantCode uint    // when non-zero, the *types.Error code wanted
		wantMsg  string
	}{
		{
			name: "full",
			conf: `{"cniVersion":"1.1.0","name":"n1","type":"knast-cni","bridge":"knastcni0","subnet":"10.232.1.0/24",
				"gateway":"10.232.1.254","ipMasq":true,"mtu":1400,"dataDir":"/tmp/kd","dns":{"nameservers":["10.232.1.254"]},
				"capabilities":{"portMappings":true},
				"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"TCP"},
					{"hostPort":5353,"containerPort":53,"protocol":"udp","hostIP":"127.0.0.1"}]}}`,
			want: &Config{CNIVersion: "1.1.0", Name: "n1", Bridge: "knastcni0", Subnet: netip.MustParsePrefix("10.232.1.0/24"),
				Gateway: netip.MustParseAddr("10.232.1.254"), IPMasq: &yes, MTU: 1400, DataDir: "/tmp/kd",
				DNS: types.DNS{Nameservers: []string{"10.232.1.254"}},
				Ports: []network.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"},
					{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353, ContainerPort: 53, Protocol: "udp"}}},
		},
		{
			name: "minimal: defaults, subnet masked",
			conf: `{"cniVersion":"1.0.0","name":"n2","type":"knast-cni","subnet":"10.232.2.7/24"}`,
			want: &Config{CNIVersion: "1.0.0", Name: "n2", Subnet: netip.MustParsePrefix("10.232.2.0/24"), DataDir: DefaultDataDir},
		},
		{
			name: "unspecified host IP means every address",
			conf: `{"name":"n","subnet":"10.232.3.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":2,"hostIP":"0.0.0.0"}]}}`,
			want: &Config{CNIVersion: "0.1.0", Name: "n", Subnet: netip.MustParsePrefix("10.232.3.0/24"), DataDir: DefaultDataDir,
				Ports: []network.PortMapping{{HostPort: 1, ContainerPort: 2, Protocol: "tcp"}}},
		},
		{
			name: "same host port on two host addresses, and tcp beside udp",
			conf: `{"name":"n","subnet":"10.232.3.0/24","runtimeConfig":{"portMappings":[
				{"hostPort":80,"containerPort":80,"hostIP":"127.0.0.1"},{"hostPort":80,"containerPort":80,"hostIP":"127.0.0.2"},
				{"hostPort":81,"containerPort":80},{"hostPort":81,"containerPort":80,"protocol":"udp"}]}}`,
			want: &Config{CNIVersion: "0.1.0", Name: "n", Subnet: netip.MustParsePrefix("10.232.3.0/24"), DataDir: DefaultDataDir,
				Ports: []network.PortMapping{
					{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 80, ContainerPort: 80, Protocol: "tcp"},
					{HostIP: netip.MustParseAddr("127.0.0.2"), HostPort: 80, ContainerPort: 80, Protocol: "tcp"},
					{HostPort: 81, ContainerPort: 80, Protocol: "tcp"},
					{HostPort: 81, ContainerPort: 80, Protocol: "udp"}}},
		},
		{
			name: "requested IP from runtimeConfig.ips, the IPv6 one skipped",
			conf: `{"name":"n","subnet":"10.232.4.0/24","runtimeConfig":{"ips":["fd00::5/64","10.232.4.9/24"]}}`,
			want: &Config{CNIVersion: "0.1.0", Name: "n", Subnet: netip.MustParsePrefix("10.232.4.0/24"), DataDir: DefaultDataDir,
				IP: netip.MustParseAddr("10.232.4.9")},
		},
		{
			name: "CNI_ARGS IP wins over runtimeConfig.ips",
			conf: `{"name":"n","subnet":"10.232.4.0/24","runtimeConfig":{"ips":["10.232.4.9"]}}`,
			args: "IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.232.4.10",
			want: &Config{CNIVersion: "0.1.0", Name: "n", Subnet: netip.MustParsePrefix("10.232.4.0/24"), DataDir: DefaultDataDir,
				IP: netip.MustParseAddr("10.232.4.10")},
		},
		{
			name: "GC's valid attachments, and the spec's first name for them",
			conf: `{"cniVersion":"1.1.0","name":"n","subnet":"10.232.5.0/24","cni.dev/attachments":[{"containerID":"a","ifname":"eth0"}]}`,
			want: &Config{CNIVersion: "1.1.0", Name: "n", Subnet: netip.MustParsePrefix("10.232.5.0/24"), DataDir: DefaultDataDir,
				ValidAttachments: []types.GCAttachment{{ContainerID: "a", IfName: "eth0"}}},
		},
		{name: "not JSON", conf: `{"name":`, wantCode: types.ErrDecodingFailure, wantMsg: "decode network config"},
		{name: "no name", conf: `{"subnet":"10.232.0.0/24"}`, wantCode: 7, wantMsg: "missing name"},
		{name: "no subnet", conf: `{"name":"n"}`, wantCode: 7, wantMsg: "missing subnet"},
		{name: "bad subnet", conf: `{"name":"n","subnet":"10.232.0.0"}`, wantCode: 7, wantMsg: "subnet"},
		{name: "IPv6 subnet", conf: `{"name":"n","subnet":"fd00::/64"}`, wantCode: 7, wantMsg: "not IPv4"},
		{name: "subnet too small", conf: `{"name":"n","subnet":"10.232.0.0/31"}`, wantCode: 7, wantMsg: "no room"},
		{name: "gateway outside", conf: `{"name":"n","subnet":"10.232.0.0/24","gateway":"10.233.0.1"}`, wantCode: 7, wantMsg: "outside"},
		{name: "gateway is the network address", conf: `{"name":"n","subnet":"10.232.0.0/24","gateway":"10.232.0.0"}`, wantCode: 7, wantMsg: "network address"},
		{name: "gateway is broadcast", conf: `{"name":"n","subnet":"10.232.0.0/24","gateway":"10.232.0.255"}`, wantCode: 7, wantMsg: "broadcast"},
		{name: "bad gateway", conf: `{"name":"n","subnet":"10.232.0.0/24","gateway":"x"}`, wantCode: 7, wantMsg: "gateway"},
		{name: "bridge name too long", conf: `{"name":"n","subnet":"10.232.0.0/24","bridge":"abcdefghijklmnop"}`, wantCode: 7, wantMsg: "longer than 15"},
		{name: "bridge name with slash", conf: `{"name":"n","subnet":"10.232.0.0/24","bridge":"a/b"}`, wantCode: 7, wantMsg: "contains"},
		{name: "mtu too small", conf: `{"name":"n","subnet":"10.232.0.0/24","mtu":20}`, wantCode: 7, wantMsg: "mtu"},
		{name: "relative dataDir", conf: `{"name":"n","subnet":"10.232.0.0/24","dataDir":"var/lib"}`, wantCode: 7, wantMsg: "absolute"},
		{name: "port 0", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":0,"containerPort":80}]}}`, wantCode: 7, wantMsg: "1..65535"},
		{name: "port too big", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":70000,"containerPort":80}]}}`, wantCode: 7, wantMsg: "1..65535"},
		{name: "sctp", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"protocol":"sctp"}]}}`, wantCode: 7, wantMsg: "not tcp or udp"},
		{name: "bad host IP", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"hostIP":"nope"}]}}`, wantCode: 7, wantMsg: "hostIP"},
		{name: "IPv6 host IP", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"hostIP":"::1"}]}}`, wantCode: 7, wantMsg: "family"},
		{name: "host port twice", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80},{"hostPort":1,"containerPort":81,"protocol":"tcp"}]}}`, wantCode: 7, wantMsg: "twice"},
		{name: "host port on one address and on all", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"portMappings":[{"hostPort":1,"containerPort":80,"hostIP":"127.0.0.1"},{"hostPort":1,"containerPort":81}]}}`, wantCode: 7, wantMsg: "twice"},
		{name: "requested IP outside", conf: `{"name":"n","subnet":"10.232.0.0/24"}`, args: "IP=10.9.9.9", wantCode: 7, wantMsg: "outside"},
		{name: "requested IP unparsable", conf: `{"name":"n","subnet":"10.232.0.0/24","runtimeConfig":{"ips":["x"]}}`, wantCode: 7, wantMsg: "requested address"},
		{name: "requested IP is the gateway", conf: `{"name":"n","subnet":"10.232.0.0/24","gateway":"10.232.0.1"}`, args: "IP=10.232.0.1", wantCode: 7, wantMsg: "is the gateway"},
		{name: "prevResult not a result", conf: `{"cniVersion":"1.1.0","name":"n","subnet":"10.232.0.0/24","prevResult":{"ips":[{"address":"x"}]}}`, wantCode: types.ErrDecodingFailure, wantMsg: "prevResult"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig([]byte(tt.conf), tt.args)
			if tt.wantCode != 0 {
				var te *types.Error
				if !errors.As(err, &te) {
					t.Fatalf("ParseConfig = %+v, %v; want a CNI error with code %d", got, err, tt.wantCode)
				}
				if te.Code != tt.wantCode || !strings.Contains(te.Msg, tt.wantMsg) {
					t.Errorf("ParseConfig error = code %d %q; want code %d containing %q", te.Code, te.Msg, tt.wantCode, tt.wantMsg)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseConfig: %v", err)
			}
			if d := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); d != "" {
				t.Errorf("ParseConfig (-want +got):\n%s", d)
			}
		})
	}
}

func TestParseConfigPrevResult(t *testing.T) {
	// A 0.4.0 prevResult (with "version" per IP) is read and turned into the current result type.
	conf := `{"cniVersion":"0.4.0","name":"n","subnet":"10.232.6.0/24","prevResult":{"cniVersion":"0.4.0",
		"interfaces":[{"name":"eth0","sandbox":"/run/netns/x"}],
		"ips":[{"version":"4","interface":0,"address":"10.232.6.2/24","gateway":"10.232.6.1"}]}}`
	c, err := ParseConfig([]byte(conf), "")
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if c.PrevResult == nil || len(c.PrevResult.IPs) != 1 || c.PrevResult.IPs[0].Address.String() != "10.232.6.2/24" ||
		len(c.PrevResult.Interfaces) != 1 || c.PrevResult.Interfaces[0].Sandbox != "/run/netns/x" {
		t.Errorf("PrevResult = %+v, want eth0 in /run/netns/x with 10.232.6.2/24", c.PrevResult)
	}
}

func TestCreateOptionsAndMatches(t *testing.T) {
	no := false
	c := &Config{Name: "n", Bridge: "br-x", Subnet: netip.MustParsePrefix("10.232.7.0/24"), Gateway: netip.MustParseAddr("10.232.7.1"), MTU: 1450, IPMasq: &no}
	o := c.CreateOptions()
	if o.Name != "n" || o.Bridge != "br-x" || o.Subnet != c.Subnet || o.Gateway != c.Gateway || o.MTU != 1450 || o.IPMasq != &no {
		t.Errorf("CreateOptions = %+v, want the config's fields", o)
	}
	tests := []struct {
		name string
		n    network.Network
		want string // substring of the error; empty: match
	}{
		{"same", network.Network{Name: "n", Bridge: "br-x", Subnet: c.Subnet, Gateway: c.Gateway}, ""},
		{"other subnet", network.Network{Name: "n", Bridge: "br-x", Subnet: netip.MustParsePrefix("10.232.8.0/24"), Gateway: c.Gateway}, "subnet 10.232.8.0/24 (config: 10.232.7.0/24)"},
		{"other bridge", network.Network{Name: "n", Bridge: "br-y", Subnet: c.Subnet, Gateway: c.Gateway}, "bridge br-y (config: br-x)"},
		{"other gateway", network.Network{Name: "n", Bridge: "br-x", Subnet: c.Subnet, Gateway: netip.MustParseAddr("10.232.7.9")}, "gateway 10.232.7.9"},
	}
	for _, tt := range tests {
		err := c.Matches(tt.n)
		if tt.want == "" {
			if err != nil {
				t.Errorf("%s: Matches = %v, want nil", tt.name, err)
			}
			continue
		}
		var te *types.Error
		if !errors.As(err, &te) || te.Code != types.ErrInvalidNetworkConfig || !strings.Contains(te.Msg, tt.want) {
			t.Errorf("%s: Matches = %v, want code 7 containing %q", tt.name, err, tt.want)
		}
	}
	// A config without bridge and gateway accepts the network's.
	loose := &Config{Name: "n", Subnet: c.Subnet}
	if err := loose.Matches(network.Network{Bridge: "any", Subnet: c.Subnet, Gateway: netip.MustParseAddr("10.232.7.5")}); err != nil {
		t.Errorf("Matches without bridge/gateway = %v, want nil", err)
	}
}

func TestCapacity(t *testing.T) {
	tests := []struct {
		subnet string
		want   int
	}{
		{"10.0.0.0/24", 253},
		{"10.0.0.0/30", 1},
		{"10.0.0.0/29", 5},
		{"10.0.0.0/16", 65533},
		{"10.0.0.0/8", 1 << 20},
	}
	for _, tt := range tests {
		if got := Capacity(netip.MustParsePrefix(tt.subnet)); got != tt.want {
			t.Errorf("Capacity(%s) = %d, want %d", tt.subnet, got, tt.want)
		}
	}
}
