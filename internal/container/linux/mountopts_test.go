package linux

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseMountOptionsFlags(t *testing.T) {
	tests := []struct {
		opt          string
		set, cleared uintptr
	}{
		{"ro", mountMSRdonly, 0},
		{"rw", 0, mountMSRdonly},
		{"suid", 0, mountMSNosuid},
		{"nosuid", mountMSNosuid, 0},
		{"dev", 0, mountMSNodev},
		{"nodev", mountMSNodev, 0},
		{"exec", 0, mountMSNoexec},
		{"noexec", mountMSNoexec, 0},
		{"sync", mountMSSync, 0},
		{"async", 0, mountMSSync},
		{"dirsync", mountMSDirsync, 0},
		{"remount", mountMSRemount, 0},
		{"mand", mountMSMandlock, 0},
		{"nomand", 0, mountMSMandlock},
		{"atime", 0, mountMSNoatime},
		{"noatime", mountMSNoatime, 0},
		{"diratime", 0, mountMSNodiratime},
		{"nodiratime", mountMSNodiratime, 0},
		{"relatime", mountMSRelatime, 0},
		{"norelatime", 0, mountMSRelatime},
		{"strictatime", mountMSStrictatime, 0},
		{"nostrictatime", 0, mountMSStrictatime},
		{"lazytime", mountMSLazytime, 0},
		{"nolazytime", 0, mountMSLazytime},
		{"symfollow", 0, mountMSNosymfollow},
		{"nosymfollow", mountMSNosymfollow, 0},
		{"iversion", mountMSIVersion, 0},
		{"noiversion", 0, mountMSIVersion},
		{"silent", mountMSSilent, 0},
		{"loud", 0, mountMSSilent},
		{"bind", mountMSBind, 0},
		{"rbind", mountMSBind | mountMSRec, 0},
	}
	for _, tt := range tests {
		t.Run(tt.opt, func(t *testing.T) {
			got := ParseMountOptions([]string{tt.opt})
			want := MountOptions{Flags: tt.set, ClearFlags: tt.cleared}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("ParseMountOptions(%q) mismatch (-want +got):\n%s", tt.opt, diff)
			}
		})
	}
}

func TestParseMountOptionsPropagation(t *testing.T) {
	tests := []struct {
		opt  string
		want uintptr
	}{
		{"shared", mountMSShared},
		{"rshared", mountMSShared | mountMSRec},
		{"slave", mountMSSlave},
		{"rslave", mountMSSlave | mountMSRec},
		{"private", mountMSPrivate},
		{"rprivate", mountMSPrivate | mountMSRec},
		{"unbindable", mountMSUnbindable},
		{"runbindable", mountMSUnbindable | mountMSRec},
	}
	for _, tt := range tests {
		got := ParseMountOptions([]string{tt.opt})
		want := MountOptions{Propagation: []uintptr{tt.want}}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseMountOptions(%q) mismatch (-want +got):\n%s", tt.opt, diff)
		}
	}
}

func TestParseMountOptionsRecursive(t *testing.T) {
	tests := []struct {
		opt      string
		set, clr uint64
	}{
		{"rro", mountAttrRdonly, 0},
		{"rrw", 0, mountAttrRdonly},
		{"rnosuid", mountAttrNosuid, 0},
		{"rsuid", 0, mountAttrNosuid},
		{"rnodev", mountAttrNodev, 0},
		{"rdev", 0, mountAttrNodev},
		{"rnoexec", mountAttrNoexec, 0},
		{"rexec", 0, mountAttrNoexec},
		{"rnodiratime", mountAttrNodiratime, 0},
		{"rdiratime", 0, mountAttrNodiratime},
		{"rnosymfollow", mountAttrNosymfollow, 0},
		{"rsymfollow", 0, mountAttrNosymfollow},
		// Setting an atime mode must clear the whole atime mask (mount_setattr(2)).
		{"rnoatime", mountAttrNoatime, mountAttrAtimeMask},
		{"rstrictatime", mountAttrStrictatime, mountAttrAtimeMask},
		{"rrelatime", 0, mountAttrAtimeMask},
		{"ratime", 0, mountAttrNoatime},
		{"rnostrictatime", 0, mountAttrStrictatime},
		{"rnorelatime", 0, 0},
	}
	for _, tt := range tests {
		got := ParseMountOptions([]string{tt.opt})
		want := MountOptions{AttrSet: tt.set, AttrClr: tt.clr}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("ParseMountOptions(%q) mismatch (-want +got):\n%s", tt.opt, diff)
		}
	}
}

func TestParseMountOptionsCombined(t *testing.T) {
	tests := []struct {
		name string
		opts []string
		want MountOptions
	}{
		{"empty", nil, MountOptions{}},
		{"defaults is nothing", []string{"defaults"}, MountOptions{}},
		{"later wins", []string{"ro", "rw"}, MountOptions{ClearFlags: mountMSRdonly}},
		{"later wins back", []string{"rw", "ro"}, MountOptions{Flags: mountMSRdonly}},
		{"rro then rrw", []string{"rro", "rrw"}, MountOptions{AttrClr: mountAttrRdonly}},
		{"tmpfs runc default", []string{"nosuid", "strictatime", "mode=755", "size=65536k"},
			MountOptions{Flags: mountMSNosuid | mountMSStrictatime, Data: "mode=755,size=65536k"}},
		{"devpts", []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"},
			MountOptions{Flags: mountMSNosuid | mountMSNoexec, Data: "newinstance,ptmxmode=0666,mode=0620,gid=5"}},
		{"unknown passed as data like runc", []string{"x-foo", "acl"}, MountOptions{Data: "x-foo,acl"}},
		{"bind ro private", []string{"rbind", "ro", "rprivate", "shared"}, MountOptions{
			Flags: mountMSBind | mountMSRec | mountMSRdonly, Propagation: []uintptr{mountMSPrivate | mountMSRec, mountMSShared}}},
		{"idmap", []string{"bind", "idmap"}, MountOptions{Flags: mountMSBind, IDMap: true}},
		{"ridmap", []string{"rbind", "ridmap"}, MountOptions{Flags: mountMSBind | mountMSRec, IDMap: true, IDMapRec: true}},
		{"tmpcopyup", []string{"tmpcopyup", "size=1m"}, MountOptions{CopyUp: true, Data: "size=1m"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, ParseMountOptions(tt.opts)); diff != "" {
				t.Errorf("ParseMountOptions(%q) mismatch (-want +got):\n%s", tt.opts, diff)
			}
		})
	}
}

func TestMountOptionsBind(t *testing.T) {
	tests := []struct {
		opts       []string
		bind, rec  bool
		needRemout bool
	}{
		{[]string{"bind"}, true, false, false},
		{[]string{"rbind"}, true, true, false},
		{[]string{"rbind", "ro"}, true, true, true},
		{[]string{"bind", "nosuid", "rprivate"}, true, false, true},
		{[]string{"rbind", "rro"}, true, true, false},
		{[]string{"nosuid"}, false, false, true},
	}
	for _, tt := range tests {
		o := ParseMountOptions(tt.opts)
		if o.Bind() != tt.bind || o.Recursive() != tt.rec || mountNeedsRemount(o) != tt.needRemout {
			t.Errorf("%q: Bind=%v Recursive=%v needsRemount=%v, want %v %v %v", tt.opts,
				o.Bind(), o.Recursive(), mountNeedsRemount(o), tt.bind, tt.rec, tt.needRemout)
		}
	}
}

func TestMountRemountFlags(t *testing.T) {
	const base = mountMSRemount | mountMSBind
	tests := []struct {
		name   string
		opts   []string
		locked uintptr
		want   uintptr
	}{
		{"ro alone", []string{"rbind", "ro"}, 0, base | mountMSRdonly},
		{"locked kept", []string{"bind", "ro"}, mountMSNosuid | mountMSNodev | mountMSRelatime, base | mountMSRdonly | mountMSNosuid | mountMSNodev | mountMSRelatime},
		{"explicit clear not re-added", []string{"bind", "ro", "suid"}, mountMSNosuid, base | mountMSRdonly},
		{"own atime replaces locked atime", []string{"bind", "noatime"}, mountMSRelatime | mountMSNodev, base | mountMSNoatime | mountMSNodev},
		{"locked ro kept", []string{"bind", "nosuid"}, mountMSRdonly, base | mountMSNosuid | mountMSRdonly},
	}
	for _, tt := range tests {
		if got := mountRemountFlags(ParseMountOptions(tt.opts), tt.locked); got != tt.want {
			t.Errorf("%s: mountRemountFlags = %#x, want %#x", tt.name, got, tt.want)
		}
	}
}

func TestMountLockedFlags(t *testing.T) {
	tests := []struct {
		st   uint64
		want uintptr
	}{
		{0, 0},
		{mountStRdonly | mountStNosuid, mountMSRdonly | mountMSNosuid},
		{mountStNodev | mountStNoexec, mountMSNodev | mountMSNoexec},
		{mountStNoatime | mountStNodiratime, mountMSNoatime | mountMSNodiratime},
		{mountStRelatime, mountMSRelatime},
		{mountStNosymfollow, mountMSNosymfollow},
		{0x20 /* ST_SYNCHRONOUS-ish bits are not locked */, 0},
	}
	for _, tt := range tests {
		if got := mountLockedFlags(tt.st); got != tt.want {
			t.Errorf("mountLockedFlags(%#x) = %#x, want %#x", tt.st, got, tt.want)
		}
	}
}

func TestMountOptionNames(t *testing.T) {
	names := MountOptionNames()
	if !slices.IsSorted(names) {
		t.Error("MountOptionNames is not sorted")
	}
	for _, want := range []string{"ro", "rro", "rbind", "rslave", "tmpcopyup", "idmap", "ridmap", "nosymfollow"} {
		if !slices.Contains(names, want) {
			t.Errorf("MountOptionNames lacks %q", want)
		}
	}
	for _, n := range names {
		if o := ParseMountOptions([]string{n}); o.Data != "" {
			t.Errorf("listed option %q is parsed as filesystem data", n)
		}
	}
}

func TestMountCgroupHierarchies(t *testing.T) {
	mounts := []*mountinfo.Info{
		{Mountpoint: "/sys/fs/cgroup", FSType: "tmpfs", Root: "/"},
		{Mountpoint: "/sys/fs/cgroup/cpu,cpuacct", FSType: "cgroup", Root: "/", VFSOptions: "rw,cpu,cpuacct"},
		{Mountpoint: "/sys/fs/cgroup/memory", FSType: "cgroup", Root: "/", VFSOptions: "rw,memory"},
		{Mountpoint: "/sys/fs/cgroup/systemd", FSType: "cgroup", Root: "/", VFSOptions: "rw,xattr,name=systemd"},
		{Mountpoint: "/sys/fs/cgroup/unified", FSType: "cgroup2", Root: "/", VFSOptions: "rw"},
		{Mountpoint: "/sys/fs/cgroup/pids", FSType: "cgroup", Root: "/knast", VFSOptions: "rw,pids"},
		{Mountpoint: "/sys/fs/cgroup/devices", FSType: "cgroup", Root: "/", VFSOptions: "rw,devices"},
		{Mountpoint: "/other/cgroup/blkio", FSType: "cgroup", Root: "/", VFSOptions: "rw,blkio"},
	}
	self := "9:pids:/knast/c1\n8:cpu,cpuacct:/knast/c1\n7:memory:/knast/c1\n1:name=systemd:/user.slice\n0::/knast/c1\n"
	got := mountCgroupHierarchies(mounts, self, "/sys/fs/cgroup")
	want := []mountCgroupHier{
		{Name: "cpu,cpuacct", Type: "cgroup", Options: "cpu,cpuacct", Source: "/sys/fs/cgroup/cpu,cpuacct/knast/c1"},
		{Name: "memory", Type: "cgroup", Options: "memory", Source: "/sys/fs/cgroup/memory/knast/c1"},
		{Name: "systemd", Type: "cgroup", Options: "name=systemd", Source: "/sys/fs/cgroup/systemd/user.slice"},
		{Name: "unified", Type: "cgroup2", Options: "", Source: "/sys/fs/cgroup/unified/knast/c1"},
		{Name: "pids", Type: "cgroup", Options: "pids", Source: "/sys/fs/cgroup/pids/c1"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mountCgroupHierarchies mismatch (-want +got):\n%s", diff)
	}

	// In a cgroup namespace the mount root lies outside the namespace: no bind source.
	outside := []*mountinfo.Info{{Mountpoint: "/sys/fs/cgroup/pids", FSType: "cgroup", Root: "/../..", VFSOptions: "rw,pids"}}
	got = mountCgroupHierarchies(outside, "3:pids:/\n", "/sys/fs/cgroup")
	want = []mountCgroupHier{{Name: "pids", Type: "cgroup", Options: "pids"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mountCgroupHierarchies in a cgroup namespace mismatch (-want +got):\n%s", diff)
	}
}

func TestMountIDMapText(t *testing.T) {
	got := mountIDMapText([]specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}, {ContainerID: 65536, HostID: 5, Size: 1}})
	if want := "0 100000 65536\n65536 5 1\n"; got != want {
		t.Errorf("mountIDMapText = %q, want %q", got, want)
	}
}

func TestMountPidFromFdinfo(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"pos:\t0\nflags:\t02000002\nmnt_id:\t15\nino:\t1234\nPid:\t4242\nNSpid:\t4242\t1\n", 4242, false},
		{"Pid:\t0\n", 0, true},  // not visible in this /proc's pid namespace
		{"Pid:\t-1\n", 0, true}, // exited
		{"pos:\t0\n", 0, true},
	}
	for _, tt := range tests {
		got, err := mountPidFromFdinfo(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("mountPidFromFdinfo(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}
