package cgroups

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const mountinfoV1 = `22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
31 22 0:28 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
32 31 0:29 / /sys/fs/cgroup/systemd rw,nosuid shared:10 - cgroup cgroup rw,xattr,release_agent=/lib/systemd/systemd-cgroups-agent,name=systemd
33 31 0:30 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/memory rw,nosuid shared:12 - cgroup cgroup rw,memory
35 31 0:32 / /sys/fs/cgroup/net_cls,net_prio rw,nosuid shared:13 - cgroup cgroup rw,net_cls,net_prio
36 31 0:31 /docker /mnt/memcopy rw - cgroup cgroup rw,memory
`

const procCgroupV1 = `5:net_cls,net_prio:/
4:memory:/user.slice
3:cpu,cpuacct:/user.slice
2:name=systemd:/user.slice/session-1.scope
`

const mountinfoHybrid = `31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
`

const procCgroupHybrid = `9:name=systemd:/
8:pids:/
6:freezer:/
4:memory:/process_api/bbd6
2:cpuacct:/
1:cpu:/
0::/
`

const mountinfoV2 = `25 22 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
`

const procCgroupV2 = "0::/user.slice/user-0.slice/session-3.scope\n"

const mountinfoCgroupns = `40 30 0:38 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw
`

func layoutOf(t *testing.T, mi, pc string, v2ctrl ...string) Layout {
	t.Helper()
	m, err := parseMountinfo(strings.NewReader(mi))
	if err != nil {
		t.Fatalf("parseMountinfo: %v", err)
	}
	own, err := parseProcCgroup(strings.NewReader(pc))
	if err != nil {
		t.Fatalf("parseProcCgroup: %v", err)
	}
	l := buildLayout(m, own)
	l.V2Controllers = v2ctrl
	return l
}

func TestBuildLayout(t *testing.T) {
	tests := []struct {
		name, mi, pc string
		v2ctrl       []string
		want         Layout
	}{
		{
			name: "pure v1, co-mounted controllers, duplicate bind mount dropped",
			mi:   mountinfoV1, pc: procCgroupV1,
			want: Layout{V1: []Hierarchy{
				{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Subsystems: []string{"name=systemd"}, Own: "/user.slice/session-1.scope"},
				{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", Root: "/", Subsystems: []string{"cpu", "cpuacct"}, Own: "/user.slice"},
				{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Subsystems: []string{"memory"}, Own: "/user.slice"},
				{Mountpoint: "/sys/fs/cgroup/net_cls,net_prio", Root: "/", Subsystems: []string{"net_cls", "net_prio"}, Own: "/"},
			}},
		},
		{
			name: "hybrid, empty cgroup2",
			mi:   mountinfoHybrid, pc: procCgroupHybrid,
			want: Layout{
				V1: []Hierarchy{
					{Mountpoint: "/sys/fs/cgroup/cpu", Root: "/", Subsystems: []string{"cpu"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/cpuacct", Root: "/", Subsystems: []string{"cpuacct"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Subsystems: []string{"memory"}, Own: "/process_api/bbd6"},
					{Mountpoint: "/sys/fs/cgroup/freezer", Root: "/", Subsystems: []string{"freezer"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/pids", Root: "/", Subsystems: []string{"pids"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Subsystems: []string{"name=systemd"}, Own: "/"},
				},
				V2: &Hierarchy{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", Own: "/"},
			},
		},
		{
			name: "hybrid with hugetlb on cgroup2",
			mi:   mountinfoHybrid, pc: procCgroupHybrid, v2ctrl: []string{"hugetlb"},
			want: Layout{
				V1: []Hierarchy{
					{Mountpoint: "/sys/fs/cgroup/cpu", Root: "/", Subsystems: []string{"cpu"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/cpuacct", Root: "/", Subsystems: []string{"cpuacct"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Subsystems: []string{"memory"}, Own: "/process_api/bbd6"},
					{Mountpoint: "/sys/fs/cgroup/freezer", Root: "/", Subsystems: []string{"freezer"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/pids", Root: "/", Subsystems: []string{"pids"}, Own: "/"},
					{Mountpoint: "/sys/fs/cgroup/systemd", Root: "/", Subsystems: []string{"name=systemd"}, Own: "/"},
				},
				V2:            &Hierarchy{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", Own: "/"},
				V2Controllers: []string{"hugetlb"},
			},
		},
		{
			name: "pure v2 at /sys/fs/cgroup",
			mi:   mountinfoV2, pc: procCgroupV2, v2ctrl: []string{"cpu", "memory", "pids"},
			want: Layout{
				V2:            &Hierarchy{Mountpoint: "/sys/fs/cgroup", Root: "/", Own: "/user.slice/user-0.slice/session-3.scope"},
				V2Controllers: []string{"cpu", "memory", "pids"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := layoutOf(t, tc.mi, tc.pc, tc.v2ctrl...)
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("layout (-want +got):\n%s", d)
			}
		})
	}
}

func TestLayoutPlacement(t *testing.T) {
	v1 := layoutOf(t, mountinfoV1, procCgroupV1)
	hybrid := layoutOf(t, mountinfoHybrid, procCgroupHybrid, "hugetlb")
	v2 := layoutOf(t, mountinfoV2, procCgroupV2, "cpu", "memory", "pids")
	tests := []struct {
		name   string
		l      Layout
		ctrl   string
		wantV1 bool
		wantV2 bool
	}{
		{"v1 memory", v1, "memory", true, false},
		{"v1 hugetlb absent", v1, "hugetlb", false, false},
		{"v1 devices absent, no cgroup2", v1, "devices", false, false},
		{"hybrid memory on v1", hybrid, "memory", true, false},
		{"hybrid hugetlb on v2", hybrid, "hugetlb", false, true},
		{"hybrid io absent", hybrid, "io", false, false},
		{"hybrid devices by eBPF", hybrid, "devices", false, true},
		{"hybrid core", hybrid, ctrlCore, false, true},
		{"v2 memory", v2, "memory", false, true},
		{"v2 io not enabled", v2, "io", false, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.l.v1For(tc.ctrl) != nil; got != tc.wantV1 {
				t.Errorf("on v1 = %v, want %v", got, tc.wantV1)
			}
			if got := tc.l.onV2(tc.ctrl); got != tc.wantV2 {
				t.Errorf("on v2 = %v, want %v", got, tc.wantV2)
			}
		})
	}
	if v1.Unified() || hybrid.Unified() || !v2.Unified() {
		t.Errorf("Unified: v1 %v hybrid %v v2 %v", v1.Unified(), hybrid.Unified(), v2.Unified())
	}
}

func TestDirIn(t *testing.T) {
	tests := []struct {
		name string
		h    Hierarchy
		path string
		v2   bool
		want string
	}{
		{"absolute v1", Hierarchy{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Own: "/user.slice"}, "/knast/a", false, "/sys/fs/cgroup/memory/knast/a"},
		{"relative v1 joins own cgroup", Hierarchy{Mountpoint: "/sys/fs/cgroup/memory", Root: "/", Own: "/user.slice"}, "knast/a", false, "/sys/fs/cgroup/memory/user.slice/knast/a"},
		{"relative v2 joins own cgroup's parent", Hierarchy{Mountpoint: "/sys/fs/cgroup", Root: "/", Own: "/user.slice/session-3.scope"}, "knast/a", true, "/sys/fs/cgroup/user.slice/knast/a"},
		{"relative v2 at root", Hierarchy{Mountpoint: "/sys/fs/cgroup/unified", Root: "/", Own: "/"}, "a", true, "/sys/fs/cgroup/unified/a"},
		{"mount root stripped (cgroupns)", Hierarchy{Mountpoint: "/sys/fs/cgroup", Root: "/kubepods/pod1", Own: "/kubepods/pod1/c1"}, "x", false, "/sys/fs/cgroup/c1/x"},
		{"absolute ignores mount root", Hierarchy{Mountpoint: "/sys/fs/cgroup", Root: "/kubepods/pod1", Own: "/kubepods/pod1/c1"}, "/x", true, "/sys/fs/cgroup/x"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := dirIn(tc.h, tc.path, tc.v2); got != tc.want {
				t.Errorf("dirIn = %q, want %q", got, tc.want)
			}
		})
	}
	l := layoutOf(t, mountinfoCgroupns, "0::/kubepods/pod1/c1\n")
	if got := newCgroup("k/x", l).v2; got != "/sys/fs/cgroup/k/x" {
		t.Errorf("cgroupns relative v2 dir = %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	if _, err := parseMountinfo(strings.NewReader("1 2 3\n")); err == nil {
		t.Error("parseMountinfo accepted a line without separator")
	}
	if _, err := parseProcCgroup(strings.NewReader("garbage\n")); err == nil {
		t.Error("parseProcCgroup accepted a line without colons")
	}
	m, err := parseMountinfo(strings.NewReader(`40 30 0:38 / /sys/fs/my\040cgroup rw - cgroup2 cgroup2 rw` + "\n"))
	if err != nil || len(m) != 1 || m[0].mountpoint != "/sys/fs/my cgroup" {
		t.Errorf("escaped mountpoint: %+v, %v", m, err)
	}
}

func TestResolve(t *testing.T) {
	tests := []struct{ in, id, want string }{
		{"", "c1", "/knast/c1"},
		{"/a/b", "c1", "/a/b"},
		{"/a/../b/", "c1", "/b"},
		{"a/b", "c1", "a/b"},
		{"../../etc", "c1", "etc"},
		{"..", "c1", "/knast/c1"},
		{"/", "c1", "/knast/c1"},
		{"system.slice:docker:abc", "c1", "system.slice:docker:abc"},
	}
	for _, tc := range tests {
		if got := Resolve(tc.in, tc.id); got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, want %q", tc.in, tc.id, got, tc.want)
		}
	}
}
