//go:build linux

package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

// pluginDir holds the knast-cni symlink to the knast binary TestMain builds.
var pluginDir string

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping CNI integration tests: they need root (network namespaces, links, nftables)")
		return 0
	}
	for _, tool := range []string{"ip", "busybox", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "CNI integration tests need %s (iproute2, busybox-static, nftables): %v\n", tool, err)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "knast-cni-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := testutil.BuildKnast(context.Background(), dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	pluginDir = filepath.Join(dir, "plugins")
	if err := os.Mkdir(pluginDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Symlink(bin, filepath.Join(pluginDir, "knast-cni")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	scope := testutil.Scope{Paths: []string{dir}, LinkPrefixes: []string{"kcnit", "knv"}, NftTables: []string{"knast-"}}
	return testutil.CheckSuite("CNI integration", scope, m.Run)
}

// testEnv is one test's network: its own name, bridge, subnet and data directory (hence its own nft
// table), driven through libcni as containerd drives plugins.
type testEnv struct {
	t       *testing.T
	name    string
	bridge  string
	subnet  netip.Prefix
	dataDir string
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
}

// newEnv makes network 10.232.N.0/24; extra is added to the plugin's config object.
func newEnv(t *testing.T, n int, extra string) *testEnv {
	t.Helper()
	e := &testEnv{
		t:       t,
		name:    fmt.Sprintf("kcnit-%d-%d", os.Getpid(), n),
		bridge:  fmt.Sprintf("kcnit%d", n),
		subnet:  netip.MustParsePrefix(fmt.Sprintf("10.232.%d.0/24", n)),
		dataDir: t.TempDir(),
	}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{pluginDir}, t.TempDir(), nil)
	conf := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[{"type":"knast-cni","bridge":%q,"subnet":%q,
		"ipMasq":true,"dataDir":%q,"capabilities":{"portMappings":true}%s}]}`, e.name, e.bridge, e.subnet, e.dataDir, extra)
	list, err := libcni.ConfListFromBytes([]byte(conf))
	if err != nil {
		t.Fatalf("ConfListFromBytes: %v", err)
	}
	e.list = list
	t.Cleanup(e.cleanup)
	return e
}

// manager opens the network store the plugin uses, to look at leases and clean up.
func (e *testEnv) manager() *network.Manager {
	return network.New(network.Options{StorageDir: e.dataDir})
}

// cleanup detaches what a failed test left, removes the network and checks that its bridge and nft
// table went with it.
func (e *testEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m := e.manager()
	if err := m.GC(ctx, func(a network.Attachment) bool { return a.Network != e.name }); err != nil {
		e.t.Errorf("cleanup: detach leftovers: %v", err)
	}
	if err := m.Remove(ctx, e.name); err != nil && !errors.Is(err, network.ErrNotExist) {
		e.t.Errorf("cleanup: remove network %s: %v", e.name, err)
	}
	if _, err := net.InterfaceByName(e.bridge); err == nil {
		e.t.Errorf("bridge %s still there after the network was removed", e.bridge)
	}
	table := network.NATTable(e.dataDir)
	if out, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
		e.t.Errorf("nft table %s still there after the network was removed:\n%s", table, out)
	}
}

// rt is the runtime config of one attachment; ports become the portMappings capability.
func (e *testEnv) rt(id, netns string, ports ...map[string]any) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: id, NetNS: netns, IfName: "eth0"}
	if len(ports) > 0 {
		rt.CapabilityArgs = map[string]any{"portMappings": ports}
	}
	return rt
}

func (e *testEnv) add(rt *libcni.RuntimeConf) *types100.Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r, err := e.cni.AddNetworkList(ctx, e.list, rt)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", rt.ContainerID, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		e.t.Fatalf("ADD %s: result: %v", rt.ContainerID, err)
	}
	return res
}

func (e *testEnv) del(rt *libcni.RuntimeConf) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.cni.DelNetworkList(ctx, e.list, rt); err != nil {
		e.t.Fatalf("DEL %s: %v", rt.ContainerID, err)
	}
}

// leases lists the network's attachments as container IDs.
func (e *testEnv) leases() []string {
	e.t.Helper()
	atts, err := e.manager().Attachments(context.Background(), e.name)
	if err != nil {
		e.t.Fatalf("attachments of %s: %v", e.name, err)
	}
	var ids []string
	for _, a := range atts {
		ids = append(ids, a.ContainerID)
	}
	return ids
}

// nftRules is the text of the env's nft table ("" when there is none).
func (e *testEnv) nftRules() string {
	out, err := exec.Command("nft", "list", "table", "ip", network.NATTable(e.dataDir)).CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// newNetns makes a named network namespace and returns its path; it is deleted at cleanup.
func newNetns(t *testing.T, tag string) (name, path string) {
	t.Helper()
	name = fmt.Sprintf("kcnit-%d-%s", os.Getpid(), tag)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { deleteNetns(t, name) })
	return name, "/run/netns/" + name
}

func deleteNetns(t *testing.T, name string) {
	if _, err := os.Stat("/run/netns/" + name); err != nil {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
		t.Errorf("ip netns del %s: %v: %s", name, err, out)
	}
}

// inNetns runs a command in a named netns and returns its combined output.
func inNetns(ns string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// ipLink is the part of `ip -j addr show` the tests read.
type ipLink struct {
	IfName    string   `json:"ifname"`
	Flags     []string `json:"flags"`
	MTU       int      `json:"mtu"`
	Address   string   `json:"address"`
	OperState string   `json:"operstate"`
	AddrInfo  []struct {
		Family    string `json:"family"`
		Local     string `json:"local"`
		PrefixLen int    `json:"prefixlen"`
	} `json:"addr_info"`
}

// linkIn describes interface dev in netns ns, or returns an error when it is missing.
func linkIn(ns, dev string) (ipLink, error) {
	out, err := exec.Command("ip", "-n", ns, "-j", "addr", "show", "dev", dev).Output()
	if err != nil {
		return ipLink{}, fmt.Errorf("ip -n %s addr show dev %s: %w", ns, dev, err)
	}
	var links []ipLink
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return ipLink{}, fmt.Errorf("ip -n %s addr show dev %s: %q: %v", ns, dev, out, err)
	}
	return links[0], nil
}

// defaultGateway is the gateway of netns ns's default route, "" without one.
func defaultGateway(ns string) string {
	out, err := exec.Command("ip", "-n", ns, "-j", "route", "show", "default").Output()
	if err != nil {
		return ""
	}
	var routes []struct {
		Gateway string `json:"gateway"`
	}
	if json.Unmarshal(out, &routes) != nil || len(routes) == 0 {
		return ""
	}
	return routes[0].Gateway
}

// cniCode is the CNI error code of err, 0 when it is no CNI error.
func cniCode(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

// hostHasLink reports whether a host interface exists.
func hostHasLink(name string) bool {
	_, err := net.InterfaceByName(name)
	return err == nil
}

// containerAddr is the container's address from a result.
func containerAddr(t *testing.T, r *types100.Result) string {
	t.Helper()
	for _, ip := range r.IPs {
		if ip.Interface != nil && *ip.Interface < len(r.Interfaces) && r.Interfaces[*ip.Interface].Sandbox != "" {
			return ip.Address.IP.String()
		}
	}
	t.Fatalf("result %+v has no address on a sandbox interface", r)
	return ""
}

// hostIf is the host end of the pair in a result: the interface without sandbox that is not the bridge.
func hostIf(t *testing.T, r *types100.Result, bridge string) string {
	t.Helper()
	for _, itf := range r.Interfaces {
		if itf.Sandbox == "" && itf.Name != bridge {
			return itf.Name
		}
	}
	t.Fatalf("result %+v names no host interface", r)
	return ""
}

func hasAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
