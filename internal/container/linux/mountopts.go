package linux

import (
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Linux mount(2) MS_* and mount_setattr(2) MOUNT_ATTR_* values. They are spelled out here instead of
// taken from x/sys/unix so that option parsing stays pure Go and table-testable on every OS; a Linux
// test checks them against unix.
const (
	mountMSRdonly      uintptr = 0x1
	mountMSNosuid      uintptr = 0x2
	mountMSNodev       uintptr = 0x4
	mountMSNoexec      uintptr = 0x8
	mountMSSync        uintptr = 0x10
	mountMSRemount     uintptr = 0x20
	mountMSMandlock    uintptr = 0x40
	mountMSDirsync     uintptr = 0x80
	mountMSNosymfollow uintptr = 0x100
	mountMSNoatime     uintptr = 0x400
	mountMSNodiratime  uintptr = 0x800
	mountMSBind        uintptr = 0x1000
	mountMSRec         uintptr = 0x4000
	mountMSSilent      uintptr = 0x8000
	mountMSUnbindable  uintptr = 1 << 17
	mountMSPrivate     uintptr = 1 << 18
	mountMSSlave       uintptr = 1 << 19
	mountMSShared      uintptr = 1 << 20
	mountMSRelatime    uintptr = 1 << 21
	mountMSIVersion    uintptr = 1 << 23
	mountMSStrictatime uintptr = 1 << 24
	mountMSLazytime    uintptr = 1 << 25

	mountAttrRdonly      uint64 = 0x1
	mountAttrNosuid      uint64 = 0x2
	mountAttrNodev       uint64 = 0x4
	mountAttrNoexec      uint64 = 0x8
	mountAttrAtimeMask   uint64 = 0x70
	mountAttrRelatime    uint64 = 0x0
	mountAttrNoatime     uint64 = 0x10
	mountAttrStrictatime uint64 = 0x20
	mountAttrNodiratime  uint64 = 0x80
	mountAttrNosymfollow uint64 = 0x200000

	// statfs(2) f_flags (ST_*), used to find the flags a bind mount must keep.
	mountStRdonly      uint64 = 0x1
	mountStNosuid      uint64 = 0x2
	mountStNodev       uint64 = 0x4
	mountStNoexec      uint64 = 0x8
	mountStNoatime     uint64 = 0x400
	mountStNodiratime  uint64 = 0x800
	mountStRelatime    uint64 = 0x1000
	mountStNosymfollow uint64 = 0x2000
)

// MountOptions is a spec mount's "options" list split the way mount(2) and mount_setattr(2) need it.
type MountOptions struct {
	Flags       uintptr   // MS_* flags to set
	ClearFlags  uintptr   // MS_* flags an option explicitly cleared (rw, suid, dev, exec, ...)
	Propagation []uintptr // MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (maybe |MS_REC), in order
	AttrSet     uint64    // MOUNT_ATTR_* set recursively (rro, rnosuid, ...)
	AttrClr     uint64    // MOUNT_ATTR_* cleared recursively (rrw, rsuid, ...)
	IDMap       bool      // idmap or ridmap: an ID-mapped mount
	IDMapRec    bool      // ridmap: ID-map every submount too
	CopyUp      bool      // tmpcopyup: seed a tmpfs with the target's existing contents
	Data        string    // everything else, comma-joined, for the filesystem
}

// Bind reports whether the options ask for a bind mount (bind or rbind).
func (o MountOptions) Bind() bool { return o.Flags&mountMSBind != 0 }

// Recursive reports whether a bind is recursive (rbind).
func (o MountOptions) Recursive() bool { return o.Flags&mountMSRec != 0 }

type mountFlagOpt struct {
	clear bool
	flag  uintptr
}

type mountAttrOpt struct {
	clear bool
	attr  uint64
}

// mountFlagTable follows runc's option table; "acl" is absent there too (MS_POSIXACL is not a mount
// flag userspace may set).
var mountFlagTable = map[string]mountFlagOpt{
	"async":         {true, mountMSSync},
	"atime":         {true, mountMSNoatime},
	"bind":          {false, mountMSBind},
	"dev":           {true, mountMSNodev},
	"diratime":      {true, mountMSNodiratime},
	"dirsync":       {false, mountMSDirsync},
	"exec":          {true, mountMSNoexec},
	"iversion":      {false, mountMSIVersion},
	"lazytime":      {false, mountMSLazytime},
	"loud":          {true, mountMSSilent},
	"mand":          {false, mountMSMandlock},
	"noatime":       {false, mountMSNoatime},
	"nodev":         {false, mountMSNodev},
	"nodiratime":    {false, mountMSNodiratime},
	"noexec":        {false, mountMSNoexec},
	"noiversion":    {true, mountMSIVersion},
	"nolazytime":    {true, mountMSLazytime},
	"nomand":        {true, mountMSMandlock},
	"norelatime":    {true, mountMSRelatime},
	"nostrictatime": {true, mountMSStrictatime},
	"nosuid":        {false, mountMSNosuid},
	"nosymfollow":   {false, mountMSNosymfollow},
	"rbind":         {false, mountMSBind | mountMSRec},
	"relatime":      {false, mountMSRelatime},
	"remount":       {false, mountMSRemount},
	"ro":            {false, mountMSRdonly},
	"rw":            {true, mountMSRdonly},
	"silent":        {false, mountMSSilent},
	"strictatime":   {false, mountMSStrictatime},
	"suid":          {true, mountMSNosuid},
	"sync":          {false, mountMSSync},
	"symfollow":     {true, mountMSNosymfollow},
}

var mountPropagationTable = map[string]uintptr{
	"private":     mountMSPrivate,
	"rprivate":    mountMSPrivate | mountMSRec,
	"slave":       mountMSSlave,
	"rslave":      mountMSSlave | mountMSRec,
	"shared":      mountMSShared,
	"rshared":     mountMSShared | mountMSRec,
	"unbindable":  mountMSUnbindable,
	"runbindable": mountMSUnbindable | mountMSRec,
}

var mountAttrTable = map[string]mountAttrOpt{
	"rro":            {false, mountAttrRdonly},
	"rrw":            {true, mountAttrRdonly},
	"rnosuid":        {false, mountAttrNosuid},
	"rsuid":          {true, mountAttrNosuid},
	"rnodev":         {false, mountAttrNodev},
	"rdev":           {true, mountAttrNodev},
	"rnoexec":        {false, mountAttrNoexec},
	"rexec":          {true, mountAttrNoexec},
	"rnodiratime":    {false, mountAttrNodiratime},
	"rdiratime":      {true, mountAttrNodiratime},
	"rrelatime":      {false, mountAttrRelatime},
	"rnorelatime":    {true, mountAttrRelatime},
	"rnoatime":       {false, mountAttrNoatime},
	"ratime":         {true, mountAttrNoatime},
	"rstrictatime":   {false, mountAttrStrictatime},
	"rnostrictatime": {true, mountAttrStrictatime},
	"rnosymfollow":   {false, mountAttrNosymfollow},
	"rsymfollow":     {true, mountAttrNosymfollow},
}

// ParseMountOptions splits spec mount options. Like runc, an option it does not know is passed to the
// filesystem as data (so "size=64m" or "x-foo" reach the kernel unchanged); "defaults" means nothing.
// A later option overrides an earlier opposite one ("ro,rw" is rw).
func ParseMountOptions(opts []string) MountOptions {
	var m MountOptions
	var data []string
	for _, o := range opts {
		if f, ok := mountFlagTable[o]; ok {
			if f.clear {
				m.Flags &^= f.flag
				m.ClearFlags |= f.flag
			} else {
				m.Flags |= f.flag
				m.ClearFlags &^= f.flag
			}
			continue
		}
		if p, ok := mountPropagationTable[o]; ok {
			m.Propagation = append(m.Propagation, p)
			continue
		}
		if a, ok := mountAttrTable[o]; ok {
			mountApplyAttr(&m, a)
			continue
		}
		switch o {
		case "defaults":
		case "tmpcopyup":
			m.CopyUp = true
		case "idmap":
			m.IDMap = true
		case "ridmap":
			m.IDMap, m.IDMapRec = true, true
		default:
			data = append(data, o)
		}
	}
	m.Data = strings.Join(data, ",")
	return m
}

func mountApplyAttr(m *MountOptions, a mountAttrOpt) {
	if a.clear {
		m.AttrClr |= a.attr
		m.AttrSet &^= a.attr
		return
	}
	m.AttrSet |= a.attr
	m.AttrClr &^= a.attr
	// mount_setattr(2): an access-time mode in attr_set needs the whole atime mask in attr_clr.
	if a.attr&mountAttrAtimeMask == a.attr {
		m.AttrClr |= mountAttrAtimeMask
	}
}

// MountOptionNames lists every option ParseMountOptions understands (for `features`), sorted.
func MountOptionNames() []string {
	names := []string{"defaults", "tmpcopyup", "idmap", "ridmap"}
	for k := range mountFlagTable {
		names = append(names, k)
	}
	for k := range mountPropagationTable {
		names = append(names, k)
	}
	for k := range mountAttrTable {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// mountLockedFlags converts statfs(2) f_flags into the MS_* flags a bind remount must repeat: in a
// user namespace the kernel refuses to clear nosuid/nodev/noexec/ro/atime flags locked by the host.
func mountLockedFlags(stFlags uint64) uintptr {
	table := []struct {
		st uint64
		ms uintptr
	}{
		{mountStRdonly, mountMSRdonly},
		{mountStNosuid, mountMSNosuid},
		{mountStNodev, mountMSNodev},
		{mountStNoexec, mountMSNoexec},
		{mountStNoatime, mountMSNoatime},
		{mountStNodiratime, mountMSNodiratime},
		{mountStRelatime, mountMSRelatime},
		{mountStNosymfollow, mountMSNosymfollow},
	}
	var ms uintptr
	for _, e := range table {
		if stFlags&e.st != 0 {
			ms |= e.ms
		}
	}
	return ms
}

// mountRemountFlags computes the flags for the MS_REMOUNT|MS_BIND that applies a bind mount's
// per-mount flags, adding the source's locked flags (mountLockedFlags; 0 for none). A flag the options
// explicitly cleared is not added back, so the kernel reports that conflict; the source's atime mode
// is only kept when the options name none, since two atime modes are invalid.
func mountRemountFlags(o MountOptions, locked uintptr) uintptr {
	const atime = mountMSNoatime | mountMSRelatime | mountMSStrictatime
	keep := locked &^ o.ClearFlags
	if o.Flags&atime != 0 {
		keep &^= atime
	}
	return (o.Flags | keep | mountMSRemount | mountMSBind) &^ mountMSRec
}

// mountNeedsRemount reports whether a bind mount's options carry per-mount flags that the initial
// MS_BIND ignores and a remount must apply.
func mountNeedsRemount(o MountOptions) bool {
	return o.Flags&^(mountMSBind|mountMSRec|mountMSRemount) != 0
}

// mountCgroupHier is one host cgroup hierarchy as the container should see it.
type mountCgroupHier struct {
	Name    string // directory under the container's cgroup mount: "cpu", "cpu,cpuacct", "unified"
	Type    string // "cgroup" or "cgroup2"
	Options string // mount data selecting a v1 hierarchy: "cpu,cpuacct", "name=systemd"
	Source  string // the host directory of this process's cgroup in that hierarchy ("" if unreachable)
}

// mountCgroupHierarchies pairs the cgroup mounts directly under base (from mountinfo) with this
// process's /proc/self/cgroup lines. A hierarchy the process has no line for is skipped.
func mountCgroupHierarchies(mounts []*mountinfo.Info, procCgroup, base string) []mountCgroupHier {
	paths := map[string]string{} // controller list ("" for v2) -> cgroup path
	for line := range strings.Lines(procCgroup) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 {
			paths[parts[1]] = parts[2]
		}
	}
	var out []mountCgroupHier
	for _, m := range mounts {
		if (m.FSType != "cgroup" && m.FSType != "cgroup2") || path.Dir(m.Mountpoint) != base {
			continue
		}
		ctrl, ok := mountCgroupMatch(m, paths)
		if !ok {
			continue
		}
		h := mountCgroupHier{Name: path.Base(m.Mountpoint), Type: m.FSType, Options: ctrl}
		// In a cgroup namespace the mount's root may lie outside it ("/../.."): no bind source then,
		// and the hierarchy can only be shown by mounting it.
		if rel, ok := mountCgroupRel(paths[ctrl], m.Root); ok {
			h.Source = path.Join(m.Mountpoint, rel)
		}
		out = append(out, h)
	}
	return out
}

// mountCgroupMatch finds the /proc/self/cgroup controller list that names the hierarchy mounted at m.
func mountCgroupMatch(m *mountinfo.Info, paths map[string]string) (string, bool) {
	if m.FSType == "cgroup2" {
		_, ok := paths[""]
		return "", ok
	}
	opts := strings.Split(m.VFSOptions, ",")
	for ctrl := range paths {
		if ctrl == "" {
			continue
		}
		all := true
		for c := range strings.SplitSeq(ctrl, ",") {
			all = all && slices.Contains(opts, c)
		}
		if all {
			return ctrl, true
		}
	}
	return "", false
}

// mountCgroupRel turns a cgroup path into a path below the mount's root directory.
func mountCgroupRel(cgroup, root string) (string, bool) {
	if root == "/" {
		return cgroup, true
	}
	if cgroup == root || strings.HasPrefix(cgroup, root+"/") {
		return "/" + strings.TrimPrefix(cgroup, root), true
	}
	return "", false
}

// mountIDMapText renders ID mappings in the uid_map/gid_map format.
func mountIDMapText(ms []specs.LinuxIDMapping) string {
	var b strings.Builder
	for _, m := range ms {
		fmt.Fprintf(&b, "%d %d %d\n", m.ContainerID, m.HostID, m.Size)
	}
	return b.String()
}

// mountPidFromFdinfo reads the "Pid:" line of a pidfd's fdinfo: the pid in the pid namespace of the
// /proc it was read from, 0 or -1 when the process is not visible there or gone.
func mountPidFromFdinfo(fdinfo string) (int, error) {
	for line := range strings.Lines(fdinfo) {
		v, ok := strings.CutPrefix(line, "Pid:")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil || pid <= 0 {
			return 0, fmt.Errorf("ID-mapping helper is not visible in /proc (pid %q)", strings.TrimSpace(v))
		}
		return pid, nil
	}
	return 0, errors.New("pidfd info has no Pid field")
}
