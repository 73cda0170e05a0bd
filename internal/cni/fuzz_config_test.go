package cni

import (
	"errors"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
)

// FuzzParseConfig feeds arbitrary network configs and CNI_ARGS to ParseConfig (what every CNI
// command reads from its caller): it must never panic, its errors must be CNI errors with code 6
// (decoding) or 7 (invalid config), and an accepted config must hold only what the network manager
// can use: an IPv4 masked subnet with room for two hosts, gateway and requested address inside it
// and distinct, an absolute data dir, an MTU of 0 or 68..65535, port mappings with real ports.
func FuzzParseConfig(f *testing.F) {
	seeds := []string{
		`{"cniVersion":"1.1.0","name":"n","type":"knast-cni","subnet":"10.88.0.0/16"}`,
		`{"cniVersion":"1.0.0","name":"n","type":"knast-cni","subnet":"10.88.0.1/30","gateway":"10.88.0.2","mtu":68,"dataDir":"/../../x",
		  "runtimeConfig":{"portMappings":[{"hostPort":80,"containerPort":65536,"protocol":"sctp","hostIP":"::1"}],"ips":["10.88.0.2/16"]}}`,
		`{"cniVersion":"1.0.0","name":"n","subnet":"fd00::/64","prevResult":{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.2/24"}]}}`,
		`{"cniVersion":"0.3.0","name":"","subnet":"10.0.0.0/33","dataDir":"rel","cni.dev/attachments":[{"containerID":"x","ifname":"eth0"}]}`,
	}
	for _, s := range seeds {
		f.Add([]byte(s), "IP=10.88.0.5;K8S_POD_NAME=x")
	}
	f.Fuzz(func(t *testing.T, stdin []byte, args string) {
		c, err := ParseConfig(stdin, args)
		if err != nil {
			var te *types.Error
			if !errors.As(err, &te) || (te.Code != types.ErrDecodingFailure && te.Code != types.ErrInvalidNetworkConfig) {
				t.Fatalf("error is not a CNI decoding/invalid-config error: %#v", err)
			}
			return
		}
		switch {
		case c.Name == "":
			t.Fatal("accepted a config without a name")
		case !c.Subnet.Addr().Is4() || c.Subnet != c.Subnet.Masked() || c.Subnet.Bits() > 30:
			t.Fatalf("accepted subnet %s", c.Subnet)
		case c.Gateway.IsValid() && !c.Subnet.Contains(c.Gateway):
			t.Fatalf("gateway %s outside %s", c.Gateway, c.Subnet)
		case c.IP.IsValid() && (!c.Subnet.Contains(c.IP) || c.IP == c.Gateway):
			t.Fatalf("requested address %s (subnet %s, gateway %s)", c.IP, c.Subnet, c.Gateway)
		case !filepath.IsAbs(c.DataDir):
			t.Fatalf("data dir %q is not absolute", c.DataDir)
		case c.MTU != 0 && (c.MTU < 68 || c.MTU > 65535):
			t.Fatalf("mtu %d", c.MTU)
		}
		for _, p := range c.Ports {
			if p.HostPort == 0 || p.ContainerPort == 0 || (p.Protocol != "tcp" && p.Protocol != "udp") {
				t.Fatalf("port mapping %+v", p)
			}
		}
	})
}
