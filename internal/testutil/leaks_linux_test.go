package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

// TestSnapshotSeesNewResources makes one resource of each kind the leak checker scopes (a cgroup on
// every hierarchy, a bridge, an nft table), checks Leaks names each, removes them and checks
// Leaks is empty again.
func TestSnapshotSeesNewResources(t *testing.T) {
	RequireRoot(t)
	name := fmt.Sprintf("kleak%d", os.Getpid()%100000)
	sc := Scope{Cgroups: []string{"/" + name}, LinkPrefixes: []string{name}, NftTables: []string{name}}
	before, err := TakeSnapshot(sc)
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil || len(mounts) == 0 {
		t.Fatalf("no cgroup mounts (%v)", err)
	}
	var want []string
	for _, m := range mounts {
		d := filepath.Join(m.Mountpoint, name, "child")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Remove(d); os.Remove(filepath.Dir(d)) })
		want = append(want, "cgroup: "+filepath.Dir(d), "cgroup: "+d)
	}
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v: %s", args, err, out)
		}
	}
	run("ip", "link", "add", name, "type", "bridge")
	t.Cleanup(func() { exec.Command("ip", "link", "del", name).Run() })
	want = append(want, "network link: "+name)
	if _, err := exec.LookPath("nft"); err == nil {
		run("nft", "add", "table", "inet", name)
		t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", name).Run() })
		want = append(want, "nft table: inet "+name)
	}

	after, err := TakeSnapshot(sc)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(before.Leaks(after), "\n")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("leaks miss %q; got:\n%s", w, got)
		}
	}

	for _, m := range mounts {
		os.Remove(filepath.Join(m.Mountpoint, name, "child"))
		os.Remove(filepath.Join(m.Mountpoint, name))
	}
	run("ip", "link", "del", name)
	exec.Command("nft", "delete", "table", "inet", name).Run()
	if leaks := before.WaitLeaks(0); len(leaks) > 0 {
		t.Errorf("leaks after removal: %v", leaks)
	}
}

func TestKnastCgroupParent(t *testing.T) {
	tests := []struct{ root, want string }{
		{"/run/knast", "/knast"},
		{"/run/knast/", "/knast"},
	}
	for _, tc := range tests {
		if got := KnastCgroupParent(tc.root); got != tc.want {
			t.Errorf("KnastCgroupParent(%q) = %q, want %q", tc.root, got, tc.want)
		}
	}
	a, b := KnastCgroupParent("/tmp/a"), KnastCgroupParent("/tmp/b")
	if a == b || !strings.HasPrefix(a, "/knast-") || len(a) != len("/knast-")+8 {
		t.Errorf("roots /tmp/a and /tmp/b give %q and %q, want distinct /knast-<8 hex>", a, b)
	}
}
