package cni

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	bolt "go.etcd.io/bbolt"

	"github.com/knast/knast/internal/network"
)

// fakeNetworks is an in-memory network manager with the real one's contract.
type fakeNetworks struct {
	dir      string
	nets     map[string]network.Network
	atts     []network.Attachment
	failWith error // returned by every call when set
	checkErr error // returned by Check
	calls    []string
}

func newFake() *fakeNetworks { return &fakeNetworks{nets: map[string]network.Network{}} }

func (f *fakeNetworks) plugin() *Plugin {
	return &Plugin{
		Open: func(dir string) Networks { f.dir = dir; return f },
		MAC: func(name string) string {
			if name == "" {
				return ""
			}
			return "aa:aa:aa:aa:aa:01"
		},
	}
}

func (f *fakeNetworks) Ensure(_ context.Context, o network.CreateOptions) (network.Network, error) {
	f.calls = append(f.calls, "ensure "+o.Name)
	if f.failWith != nil {
		return network.Network{}, f.failWith
	}
	if n, ok := f.nets[o.Name]; ok {
		if n.Subnet != o.Subnet || (o.Bridge != "" && n.Bridge != o.Bridge) {
			return network.Network{}, fmt.Errorf("network %s: %w with subnet %s", o.Name, network.ErrExist, n.Subnet)
		}
		return n, nil
	}
	n := network.Network{Name: o.Name, Bridge: o.Bridge, Subnet: o.Subnet, Gateway: o.Gateway, MTU: o.MTU}
	if n.Bridge == "" {
		n.Bridge = "knast-auto"
	}
	if !n.Gateway.IsValid() {
		n.Gateway = n.Subnet.Addr().Next()
	}
	f.nets[o.Name] = n
	return n, nil
}

func (f *fakeNetworks) Get(_ context.Context, name string) (network.Network, error) {
	f.calls = append(f.calls, "get "+name)
	if f.failWith != nil {
		return network.Network{}, f.failWith
	}
	n, ok := f.nets[name]
	if !ok {
		return n, fmt.Errorf("network %s: %w", name, network.ErrNotExist)
	}
	return n, nil
}

func (f *fakeNetworks) Attachments(_ context.Context, name string) ([]network.Attachment, error) {
	if f.failWith != nil {
		return nil, f.failWith
	}
	if _, ok := f.nets[name]; !ok {
		return nil, fmt.Errorf("network %s: %w", name, network.ErrNotExist)
	}
	var out []network.Attachment
	for _, a := range f.atts {
		if a.Network == name {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeNetworks) Attach(_ context.Context, o network.AttachOptions) (network.Attachment, error) {
	f.calls = append(f.calls, fmt.Sprintf("attach %s %s %s %s %v %v", o.Network, o.ContainerID, o.IfName, o.NetNS, o.Ports, o.IP))
	if f.failWith != nil {
		return network.Attachment{}, f.failWith
	}
	n := f.nets[o.Network]
	addr := o.IP
	if !addr.IsValid() {
		addr = n.Gateway.Next()
		for _, a := range f.atts {
			if a.Network == o.Network && a.Address.Addr().Compare(addr) >= 0 {
				addr = a.Address.Addr().Next()
			}
		}
	}
	a := network.Attachment{Network: o.Network, ContainerID: o.ContainerID, IfName: o.IfName, HostIf: "knv" + o.ContainerID,
		NetNS: o.NetNS, Address: netip.PrefixFrom(addr, n.Subnet.Bits()), Gateway: n.Gateway, MAC: "0a:58:00:00:00:02", Ports: o.Ports}
	f.atts = append(f.atts, a)
	return a, nil
}

func (f *fakeNetworks) Detach(_ context.Context, name, containerID, ifName string) error {
	f.calls = append(f.calls, fmt.Sprintf("detach %s %s %s", name, containerID, ifName))
	if f.failWith != nil {
		return f.failWith
	}
	if _, ok := f.nets[name]; !ok {
		return fmt.Errorf("network %s: %w", name, network.ErrNotExist)
	}
	f.atts = slices.DeleteFunc(f.atts, func(a network.Attachment) bool {
		return a.Network == name && a.ContainerID == containerID && a.IfName == ifName
	})
	return nil
}

func (f *fakeNetworks) Check(_ context.Context, name, containerID, ifName string) error {
	f.calls = append(f.calls, fmt.Sprintf("check %s %s %s", name, containerID, ifName))
	return f.checkErr
}

func (f *fakeNetworks) GC(_ context.Context, keep func(network.Attachment) bool) error {
	f.calls = append(f.calls, "gc")
	if f.failWith != nil {
		return f.failWith
	}
	f.atts = slices.DeleteFunc(f.atts, func(a network.Attachment) bool { return !keep(a) })
	return nil
}

// testDataDir holds an empty networks.db, so the plugin goes to the (fake) manager.
var testDataDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "knast-cni-test-")
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, storeFile), nil, 0o600)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	testDataDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func conf(extra string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pn","type":"knast-cni","bridge":"knastcnip","subnet":"10.232.10.0/24","dataDir":%q%s}`, testDataDir, extra))
}

// withDir puts testDataDir into a config with a %q for it.
func withDir(format string) []byte { return []byte(fmt.Sprintf(format, testDataDir)) }

func codeOf(err error) uint {
	var te *types.Error
	if errors.As(err, &te) {
		return te.Code
	}
	return 0
}

func TestPluginAdd(t *testing.T) {
	f := newFake()
	p := f.plugin()
	ctx := context.Background()
	r, err := p.Add(ctx, Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0",
		StdinData: conf(`,"runtimeConfig":{"portMappings":[{"hostPort":8080,"containerPort":80}]}`)})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	res, err := types100.GetResult(r)
	if err != nil {
		t.Fatalf("GetResult: %v", err)
	}
	if f.dir != testDataDir {
		t.Errorf("manager opened on %q, want the config's dataDir %s", f.dir, testDataDir)
	}
	wantCalls := []string{"ensure pn", "attach pn c1 eth0 /run/netns/a [8080:80/tcp] invalid IP"}
	if !slices.Equal(f.calls, wantCalls) {
		t.Errorf("calls = %q, want %q", f.calls, wantCalls)
	}
	if len(res.Interfaces) != 3 || res.Interfaces[ifBridge].Name != "knastcnip" || res.Interfaces[ifBridge].Mac != "aa:aa:aa:aa:aa:01" ||
		res.Interfaces[ifContainer].Sandbox != "/run/netns/a" || res.IPs[0].Address.String() != "10.232.10.2/24" {
		t.Errorf("result = %+v", res)
	}

	// A second container gets the next address; an old config version gets an old result.
	r, err = p.Add(ctx, Args{ContainerID: "c2", Netns: "/run/netns/b", IfName: "eth0",
		StdinData: withDir(`{"cniVersion":"0.4.0","name":"pn","bridge":"knastcnip","subnet":"10.232.10.0/24","dataDir":%q}`)})
	if err != nil {
		t.Fatalf("Add c2: %v", err)
	}
	if r.Version() != "0.4.0" {
		t.Errorf("0.4.0 config gave a %s result", r.Version())
	}

	tests := []struct {
		name     string
		args     Args
		failWith error
		wantCode uint
		wantMsg  string
	}{
		{name: "bad config", args: Args{Netns: "/x", StdinData: []byte(`{"name":"pn"}`)}, wantCode: 7, wantMsg: "missing subnet"},
		{name: "no netns", args: Args{ContainerID: "c3", IfName: "eth0", StdinData: conf("")}, wantCode: types.ErrInvalidNetNS},
		{name: "network exists with another subnet", args: Args{ContainerID: "c3", Netns: "/x", IfName: "eth0",
			StdinData: []byte(`{"cniVersion":"1.1.0","name":"pn","subnet":"10.232.11.0/24"}`)}, wantCode: 7,
			wantMsg: "network pn exists with subnet 10.232.10.0/24 (config: 10.232.11.0/24)"},
		{name: "network exists with another gateway", args: Args{ContainerID: "c3", Netns: "/x", IfName: "eth0",
			StdinData: []byte(`{"cniVersion":"1.1.0","name":"pn","subnet":"10.232.10.0/24","gateway":"10.232.10.200"}`)}, wantCode: 7,
			wantMsg: "gateway 10.232.10.1 (config: 10.232.10.200)"},
		{name: "subnet exhausted", args: Args{ContainerID: "c3", Netns: "/x", IfName: "eth0", StdinData: conf("")},
			failWith: fmt.Errorf("network pn: %w", network.ErrExhausted), wantCode: types.ErrTryAgainLater, wantMsg: "no free address"},
		{name: "store locked", args: Args{ContainerID: "c3", Netns: "/x", IfName: "eth0", StdinData: conf("")},
			failWith: fmt.Errorf("store: database is locked: %w", bolt.ErrTimeout), wantCode: types.ErrTryAgainLater, wantMsg: "locked"},
		{name: "anything else", args: Args{ContainerID: "c3", Netns: "/x", IfName: "eth0", StdinData: conf("")},
			failWith: errors.New("netlink: boom"), wantCode: types.ErrInternal, wantMsg: "network pn: netlink: boom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.failWith = tt.failWith
			defer func() { f.failWith = nil }()
			_, err := p.Add(ctx, tt.args)
			if codeOf(err) != tt.wantCode || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Errorf("Add = %v (code %d), want code %d containing %q", err, codeOf(err), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestPluginDel(t *testing.T) {
	f := newFake()
	p := f.plugin()
	ctx := context.Background()
	// No network at all: success.
	if err := p.Del(ctx, Args{ContainerID: "c1", IfName: "eth0", StdinData: conf("")}); err != nil {
		t.Fatalf("Del without network: %v", err)
	}
	if _, err := p.Add(ctx, Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0", StdinData: conf("")}); err != nil {
		t.Fatalf("Add: %v", err)
	}
	for i := range 2 {
		if err := p.Del(ctx, Args{ContainerID: "c1", IfName: "eth0", StdinData: conf("")}); err != nil {
			t.Fatalf("Del #%d: %v", i+1, err)
		}
	}
	if len(f.atts) != 0 {
		t.Errorf("attachments after Del: %+v", f.atts)
	}
	f.failWith = errors.New("permission denied")
	if err := p.Del(ctx, Args{ContainerID: "c1", IfName: "eth0", StdinData: conf("")}); codeOf(err) != types.ErrInternal {
		t.Errorf("Del with a failing manager = %v, want code 999", err)
	}
	f.failWith = nil
	if err := p.Del(ctx, Args{ContainerID: "c1", IfName: "eth0", StdinData: []byte(`{"name":"pn"}`)}); codeOf(err) != 7 {
		t.Errorf("Del with a bad config = %v, want code 7", err)
	}
}

func TestPluginCheck(t *testing.T) {
	f := newFake()
	p := f.plugin()
	ctx := context.Background()
	r, err := p.Add(ctx, Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0", StdinData: conf("")})
	if err != nil {
		t.Fatalf("Add: %v", err)
	}
	var sb strings.Builder
	if err := r.PrintTo(&sb); err != nil {
		t.Fatal(err)
	}
	withPrev := conf(`,"prevResult":` + sb.String())
	tests := []struct {
		name     string
		args     Args
		checkErr error
		wantCode uint
		wantMsg  string
	}{
		{name: "ok", args: Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0", StdinData: withPrev}},
		{name: "no prevResult", args: Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0", StdinData: conf("")}, wantCode: 7, wantMsg: "needs a prevResult"},
		{name: "unknown container", args: Args{ContainerID: "c9", Netns: "/run/netns/a", IfName: "eth0", StdinData: withPrev}, wantCode: types.ErrUnknownContainer, wantMsg: "no attachment of c9/eth0"},
		{name: "other netns", args: Args{ContainerID: "c1", Netns: "/run/netns/b", IfName: "eth0", StdinData: withPrev}, wantCode: types.ErrInternal, wantMsg: "CNI_NETNS /run/netns/b"},
		{name: "kernel differs", args: Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0", StdinData: withPrev},
			checkErr: errors.New("link knvc1 missing"), wantCode: types.ErrInternal, wantMsg: "link knvc1 missing"},
		{name: "unknown network", args: Args{ContainerID: "c1", Netns: "/run/netns/a", IfName: "eth0",
			StdinData: []byte(`{"cniVersion":"1.1.0","name":"other","subnet":"10.232.12.0/24","prevResult":` + sb.String() + `}`)},
			wantCode: types.ErrUnknownContainer, wantMsg: "network other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.checkErr = tt.checkErr
			err := p.Check(ctx, tt.args)
			if codeOf(err) != tt.wantCode || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Errorf("Check = %v (code %d), want code %d containing %q", err, codeOf(err), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestPluginStatus(t *testing.T) {
	ctx := context.Background()
	small := string(withDir(`{"cniVersion":"1.1.0","name":"ps","bridge":"knastcnis","subnet":"10.232.13.0/30","dataDir":%q}`))
	tests := []struct {
		name     string
		setup    func(f *fakeNetworks, p *Plugin)
		conf     string
		wantCode uint
		wantMsg  string
	}{
		{name: "network not made yet", conf: small},
		{name: "network with room", conf: string(conf("")), setup: func(f *fakeNetworks, p *Plugin) {
			p.Add(ctx, Args{ContainerID: "c1", Netns: "/n", IfName: "eth0", StdinData: conf("")})
		}},
		{name: "subnet full", conf: small, setup: func(f *fakeNetworks, p *Plugin) {
			p.Add(ctx, Args{ContainerID: "c1", Netns: "/n", IfName: "eth0", StdinData: []byte(small)})
		}, wantCode: types.ErrPluginNotAvailable, wantMsg: "full (1 of 1"},
		{name: "store unreadable", conf: small, setup: func(f *fakeNetworks, p *Plugin) { f.failWith = errors.New("read store: EIO") },
			wantCode: types.ErrPluginNotAvailable, wantMsg: "EIO"},
		{name: "network differs", conf: string(withDir(`{"cniVersion":"1.1.0","name":"ps","subnet":"10.232.14.0/24","dataDir":%q}`)), setup: func(f *fakeNetworks, p *Plugin) {
			p.Add(ctx, Args{ContainerID: "c1", Netns: "/n", IfName: "eth0", StdinData: []byte(small)})
		}, wantCode: 7, wantMsg: "subnet 10.232.13.0/30"},
		{name: "dataDir is a file", conf: `{"cniVersion":"1.1.0","name":"ps","subnet":"10.232.14.0/24","dataDir":"/proc/version"}`,
			wantCode: types.ErrPluginNotAvailable, wantMsg: "not a directory"},
		{name: "bad config", conf: `{"cniVersion":"1.1.0","name":"ps"}`, wantCode: 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake()
			p := f.plugin()
			if tt.setup != nil {
				tt.setup(f, p)
			}
			err := p.Status(ctx, Args{StdinData: []byte(tt.conf)})
			if codeOf(err) != tt.wantCode || !strings.Contains(fmt.Sprint(err), tt.wantMsg) {
				t.Errorf("Status = %v (code %d), want code %d containing %q", err, codeOf(err), tt.wantCode, tt.wantMsg)
			}
		})
	}
}

func TestPluginGC(t *testing.T) {
	f := newFake()
	p := f.plugin()
	ctx := context.Background()
	other := withDir(`{"cniVersion":"1.1.0","name":"po","subnet":"10.232.15.0/24","dataDir":%q}`)
	for _, a := range []Args{
		{ContainerID: "keep", Netns: "/n1", IfName: "eth0", StdinData: conf("")},
		{ContainerID: "keep", Netns: "/n1", IfName: "eth1", StdinData: conf("")},
		{ContainerID: "stale", Netns: "/n2", IfName: "eth0", StdinData: conf("")},
		{ContainerID: "elsewhere", Netns: "/n3", IfName: "eth0", StdinData: other},
	} {
		if _, err := p.Add(ctx, a); err != nil {
			t.Fatalf("Add %s: %v", a.ContainerID, err)
		}
	}
	gc := conf(`,"cni.dev/valid-attachments":[{"containerID":"keep","ifname":"eth0"}]`)
	if err := p.GC(ctx, Args{StdinData: gc}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	var left []string
	for _, a := range f.atts {
		left = append(left, a.Network+"/"+a.ContainerID+"/"+a.IfName)
	}
	want := []string{"pn/keep/eth0", "po/elsewhere/eth0"}
	if !slices.Equal(left, want) {
		t.Errorf("after GC: %q, want %q (the stale ones of pn gone, other networks untouched)", left, want)
	}
	f.failWith = fmt.Errorf("store: %w", bolt.ErrTimeout)
	if err := p.GC(ctx, Args{StdinData: gc}); codeOf(err) != types.ErrTryAgainLater {
		t.Errorf("GC on a locked store = %v, want code 11", err)
	}
}

func TestNoStoreNoManager(t *testing.T) {
	// Without networks.db nothing was ever attached: DEL, GC and STATUS succeed without making a store.
	empty := t.TempDir()
	c := []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"pn","subnet":"10.232.16.0/24","dataDir":%q}`, empty))
	f := newFake()
	f.failWith = errors.New("the manager must not be opened")
	p := f.plugin()
	ctx := context.Background()
	for name, op := range map[string]func() error{
		"DEL":    func() error { return p.Del(ctx, Args{ContainerID: "c1", IfName: "eth0", StdinData: c}) },
		"GC":     func() error { return p.GC(ctx, Args{StdinData: c}) },
		"STATUS": func() error { return p.Status(ctx, Args{StdinData: c}) },
	} {
		if err := op(); err != nil {
			t.Errorf("%s without a store: %v", name, err)
		}
	}
	if f.dir != "" || len(f.calls) != 0 {
		t.Errorf("manager opened on %q, calls %q; want none", f.dir, f.calls)
	}
	if ents, _ := os.ReadDir(empty); len(ents) != 0 {
		t.Errorf("data dir got %d entries, want none", len(ents))
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		err  error
		want uint
	}{
		{types.NewError(types.ErrInvalidNetworkConfig, "x", ""), 7},
		{fmt.Errorf("wrapped: %w", types.NewError(types.ErrUnsupportedField, "x", "")), 2},
		{fmt.Errorf("a: %w", network.ErrExhausted), 11},
		{fmt.Errorf("a: %w", network.ErrInUse), 11},
		{fmt.Errorf("a: %w", context.DeadlineExceeded), 11},
		{fmt.Errorf("a: %w", bolt.ErrTimeout), 11},
		{fmt.Errorf("a: %w", network.ErrNotExist), 3},
		{errors.New("other"), 999},
	}
	for _, tt := range tests {
		if got := classify(tt.err); got.Code != tt.want || !strings.Contains(got.Msg, strings.SplitN(tt.err.Error(), ";", 2)[0]) {
			t.Errorf("classify(%v) = %d %q, want code %d and the message kept", tt.err, got.Code, got.Msg, tt.want)
		}
	}
}
