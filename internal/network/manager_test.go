package network

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeDriver records what the manager asks of the kernel.
type fakeDriver struct {
	mu       sync.Mutex
	routes   []netip.Prefix
	links    []string
	bridges  map[string]bool
	pairs    map[string]Attachment // by HostIf
	nats     int
	lastNets []Network
	lastAtts []Attachment
	failOn   string // a ContainerID whose attach fails
	table    string
}

func newFake() *fakeDriver {
	return &fakeDriver{bridges: map[string]bool{}, pairs: map[string]Attachment{}}
}

func (f *fakeDriver) setNATTable(name string) { f.table = name }

func (f *fakeDriver) ensureBridge(_ context.Context, n *Network) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.bridges[n.Bridge] = true
	return nil
}

func (f *fakeDriver) removeBridge(_ context.Context, n *Network) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.bridges, n.Bridge)
	return nil
}

func (f *fakeDriver) attach(_ context.Context, _ *Network, a *Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pairs[a.HostIf] = *a
	if a.ContainerID == f.failOn {
		return errors.New("boom")
	}
	return nil
}

func (f *fakeDriver) detach(_ context.Context, _ *Network, a *Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.pairs, a.HostIf)
	return nil
}

func (f *fakeDriver) check(_ context.Context, _ *Network, a *Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.pairs[a.HostIf]; !ok {
		return fmt.Errorf("%s missing", a.HostIf)
	}
	return nil
}

func (f *fakeDriver) syncNAT(_ context.Context, nets []Network, atts []Attachment) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nats++
	f.lastNets, f.lastAtts = nets, atts
	return nil
}

func (f *fakeDriver) hostRoutes(context.Context) ([]netip.Prefix, error) { return f.routes, nil }
func (f *fakeDriver) hostLinks(context.Context) ([]string, error)        { return f.links, nil }

func testManager(t *testing.T, f *fakeDriver) *Manager {
	return newManager(Options{StorageDir: t.TempDir()}, f)
}

func TestManagerNetworks(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	f.routes = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.90.0.0/24")}
	f.links = []string{"lo", "eth0", "knast0"}
	m := testManager(t, f)
	if !strings.HasPrefix(f.table, "knast-") {
		t.Errorf("NAT table for a private storage: %q", f.table)
	}

	def, err := m.Default(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if def.Name != "knast" || def.Subnet.String() != "10.90.1.0/24" || def.Gateway.String() != "10.90.1.1" || def.Bridge != "knast1" || !def.IPMasq {
		t.Errorf("default network = %+v; want 10.90.1.0/24 (the host routes 10.90.0.0/24) on knast1 (knast0 exists)", def)
	}
	if again, err := m.Default(ctx); err != nil || again.Subnet != def.Subnet || again.Bridge != def.Bridge {
		t.Errorf("Default twice: %+v %v", again, err)
	}
	off := false
	n2, err := m.Create(ctx, CreateOptions{Name: "two", IPMasq: &off, Labels: map[string]string{"a": "b"}})
	if err != nil || n2.Subnet.String() != "10.90.2.0/24" || n2.Bridge != "knast2" || n2.IPMasq || n2.Labels["a"] != "b" {
		t.Errorf("second network = %+v, %v", n2, err)
	}
	if !f.bridges["knast1"] || !f.bridges["knast2"] {
		t.Errorf("bridges: %v", f.bridges)
	}
	for _, tc := range []struct {
		name string
		o    CreateOptions
		want string
		is   error
	}{
		{"same name", CreateOptions{Name: "two"}, "already exists", ErrExist},
		{"overlap", CreateOptions{Name: "x", Subnet: netip.MustParsePrefix("10.90.2.128/25")}, "overlaps network two", nil},
		{"host route", CreateOptions{Name: "x", Subnet: netip.MustParsePrefix("10.90.0.0/16")}, "host's route to 10.90.0.0/24", nil},
		{"gateway outside", CreateOptions{Name: "x", Subnet: netip.MustParsePrefix("10.77.0.0/24"), Gateway: netip.MustParseAddr("10.78.0.1")}, "is not a host address", nil},
		{"bridge taken", CreateOptions{Name: "x", Subnet: netip.MustParsePrefix("10.77.0.0/24"), Bridge: "knast2"}, "used by network two", nil},
		{"bad name", CreateOptions{Name: "../x"}, "network name", nil},
	} {
		_, err := m.Create(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// Ensure returns what exists, and refuses a different subnet or bridge.
	if n, err := m.Ensure(ctx, CreateOptions{Name: "two", Subnet: netip.MustParsePrefix("10.90.2.0/24")}); err != nil || n.Bridge != "knast2" {
		t.Errorf("Ensure same: %+v %v", n, err)
	}
	if _, err := m.Ensure(ctx, CreateOptions{Name: "two", Subnet: netip.MustParsePrefix("10.90.3.0/24")}); !errors.Is(err, ErrExist) || !strings.Contains(err.Error(), "subnet 10.90.2.0/24") {
		t.Errorf("Ensure other subnet: %v", err)
	}
	if _, err := m.Ensure(ctx, CreateOptions{Name: "two", Bridge: "br9"}); err == nil {
		t.Error("Ensure other bridge accepted")
	}
	if n, err := m.Ensure(ctx, CreateOptions{Name: "three", Subnet: netip.MustParsePrefix("10.77.0.0/24"), Bridge: "kt3", MTU: 1400}); err != nil || n.MTU != 1400 {
		t.Errorf("Ensure new: %+v %v", n, err)
	}
	list, err := m.List(ctx)
	if err != nil || len(list) != 3 || list[0].Name != "knast" || list[2].Name != "two" {
		t.Fatalf("List = %+v, %v", list, err)
	}
	if _, err := m.Get(ctx, "nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Get missing: %v", err)
	}
	if err := m.Remove(ctx, "nope"); !errors.Is(err, ErrNotExist) {
		t.Errorf("Remove missing: %v", err)
	}
	for _, n := range []string{"knast", "two", "three"} {
		if err := m.Remove(ctx, n); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.bridges) != 0 || len(f.lastNets) != 0 {
		t.Errorf("after removing all: bridges %v, NAT nets %v", f.bridges, f.lastNets)
	}
}

func TestManagerAttach(t *testing.T) {
	ctx := context.Background()
	f := newFake()
	m := testManager(t, f)
	if _, err := m.Create(ctx, CreateOptions{Name: "n", Subnet: netip.MustParsePrefix("10.77.0.0/29"), Bridge: "kt0"}); err != nil {
		t.Fatal(err)
	}
	web, err := m.Attach(ctx, AttachOptions{Network: "n", ContainerID: "web", NetNS: "/proc/1/ns/net", Ports: []PortMapping{{HostPort: 8080, ContainerPort: 80}}})
	if err != nil {
		t.Fatal(err)
	}
	if web.Address.String() != "10.77.0.2/29" || web.Gateway.String() != "10.77.0.1" || web.IfName != "eth0" || web.MAC != "0a:58:0a:4d:00:02" || len(web.HostIf) > 15 || web.Ports[0].Protocol != "tcp" {
		t.Errorf("attachment = %+v", web)
	}
	if _, ok := f.pairs[web.HostIf]; !ok || len(f.lastAtts) != 1 || f.lastAtts[0].Ports[0].HostPort != 8080 {
		t.Errorf("driver state: pairs %v, NAT atts %+v", f.pairs, f.lastAtts)
	}
	for _, tc := range []struct {
		name string
		o    AttachOptions
		want string
		is   error
	}{
		{"again", AttachOptions{Network: "n", ContainerID: "web", NetNS: "/x"}, "already attached", ErrExist},
		{"port taken", AttachOptions{Network: "n", ContainerID: "db", NetNS: "/x", Ports: []PortMapping{{HostPort: 8080, ContainerPort: 5432}}}, "published by container web", ErrInUse},
		{"address taken", AttachOptions{Network: "n", ContainerID: "db", NetNS: "/x", IP: netip.MustParseAddr("10.77.0.2")}, "10.77.0.2", ErrInUse},
		{"no network", AttachOptions{Network: "zz", ContainerID: "db", NetNS: "/x"}, "network zz", ErrNotExist},
		{"no netns", AttachOptions{Network: "n", ContainerID: "db"}, "no network namespace", nil},
		{"bad ifname", AttachOptions{Network: "n", ContainerID: "db", NetNS: "/x", IfName: "a/b"}, "interface", nil},
		{"driver fails", AttachOptions{Network: "n", ContainerID: "fails", NetNS: "/x"}, "boom", nil},
	} {
		f.failOn = "fails"
		_, err := m.Attach(ctx, tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) || (tc.is != nil && !errors.Is(err, tc.is)) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
	// The failed attach released its lease and its pair.
	atts, err := m.Attachments(ctx, "n")
	if err != nil || len(atts) != 1 || len(f.pairs) != 1 {
		t.Fatalf("after failures: %+v, %v, pairs %v", atts, err, f.pairs)
	}
	// A requested address; the rest fill up; the subnet runs out with a clear error.
	db, err := m.Attach(ctx, AttachOptions{Network: "n", ContainerID: "db", NetNS: "/x", IP: netip.MustParseAddr("10.77.0.6")})
	if err != nil || db.Address.Addr().String() != "10.77.0.6" {
		t.Fatalf("requested address: %+v %v", db, err)
	}
	for _, id := range []string{"c3", "c4", "c5"} {
		if _, err := m.Attach(ctx, AttachOptions{Network: "n", ContainerID: id, NetNS: "/x"}); err != nil {
			t.Fatal(err)
		}
	}
	_, err = m.Attach(ctx, AttachOptions{Network: "n", ContainerID: "c6", NetNS: "/x"})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "network n") || !strings.Contains(err.Error(), "10.77.0.0/29") {
		t.Errorf("exhausted: %v", err)
	}
	if err := m.Check(ctx, "n", "db", ""); err != nil {
		t.Errorf("Check: %v", err)
	}
	if err := m.Check(ctx, "n", "nobody", ""); !errors.Is(err, ErrNotExist) {
		t.Errorf("Check missing: %v", err)
	}
	err = m.Remove(ctx, "n")
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "c3, c4, c5, db, web") {
		t.Errorf("Remove in use: %v", err)
	}
	// Detach is idempotent; GC keeps what keep accepts.
	for range 2 {
		if err := m.Detach(ctx, "n", "web", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if len(f.lastAtts) != 4 || slices.ContainsFunc(f.lastAtts, func(a Attachment) bool { return a.ContainerID == "web" }) {
		t.Errorf("NAT after detach: %+v", f.lastAtts)
	}
	if err := m.GC(ctx, func(a Attachment) bool { return a.ContainerID == "db" }); err != nil {
		t.Fatal(err)
	}
	atts, _ = m.Attachments(ctx, "")
	if len(atts) != 1 || atts[0].ContainerID != "db" {
		t.Errorf("after GC: %+v", atts)
	}
	for range 2 {
		if err := m.DetachAll(ctx, "db"); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Remove(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	if len(f.pairs) != 0 || len(f.bridges) != 0 {
		t.Errorf("left: pairs %v bridges %v", f.pairs, f.bridges)
	}
}

// TestManagerConcurrentAttach runs 20 attaches through 20 Managers on one directory (each its own
// database opens, as separate processes would): 20 distinct addresses and host interface names.
func TestManagerConcurrentAttach(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	f := newFake()
	if _, err := newManager(Options{StorageDir: dir}, f).Create(ctx, CreateOptions{Name: "n", Subnet: netip.MustParsePrefix("10.78.0.0/24"), Bridge: "kt1"}); err != nil {
		t.Fatal(err)
	}
	const n = 20
	var wg sync.WaitGroup
	res := make([]Attachment, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := newManager(Options{StorageDir: dir}, f)
			res[i], errs[i] = m.Attach(ctx, AttachOptions{Network: "n", ContainerID: fmt.Sprintf("c%d", i), NetNS: "/x"})
		}()
	}
	wg.Wait()
	addrs, ifs := map[netip.Prefix]bool{}, map[string]bool{}
	for i := range n {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		addrs[res[i].Address], ifs[res[i].HostIf] = true, true
	}
	if len(addrs) != n || len(ifs) != n {
		t.Errorf("%d addresses, %d host interfaces for %d attaches", len(addrs), len(ifs), n)
	}
}
