package freebsd

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// nmount(2)/unmount(2) flags, <sys/mount.h>.
const (
	MntRdonly      = 0x00000001 // MNT_RDONLY
	MntSynchronous = 0x00000002 // MNT_SYNCHRONOUS
	MntNoexec      = 0x00000004 // MNT_NOEXEC
	MntNosuid      = 0x00000008 // MNT_NOSUID
	MntAsync       = 0x00000040 // MNT_ASYNC
	MntForce       = 0x00080000 // MNT_FORCE (unmount)
	MntNosymfollow = 0x00400000 // MNT_NOSYMFOLLOW
	MntNoatime     = 0x10000000 // MNT_NOATIME
)

// Mount is one nmount(2) call: a file system mounted on Path, a host path inside the jail's root.
type Mount struct {
	FSType string
	Path   string
	// Point is where the mount point is made: Path, or its place in the writable rootfs when the jail's
	// root is a read-only view of it.
	Point   string
	Source  string // nullfs: the host directory (or file) shown at Path
	Flags   int
	Options []Param
}

// Params is the nmount(2) iovec list: fstype, fspath, the source, then the file system's options.
func (m Mount) Params() []Param {
	p := []Param{Str("fstype", m.FSType), Str("fspath", m.Path)}
	switch {
	case m.FSType == "nullfs":
		p = append(p, Str("target", m.Source))
	case m.Source != "":
		p = append(p, Str("from", m.Source))
	}
	if m.Flags&MntRdonly != 0 {
		p = append(p, Bool("ro", true))
	}
	return append(p, m.Options...)
}

// flagOptions are the mount options that are MNT_* flags: set (true) or cleared (false).
var flagOptions = map[string]struct {
	flag int
	set  bool
}{
	"ro": {MntRdonly, true}, "rw": {MntRdonly, false},
	"nosuid": {MntNosuid, true}, "suid": {MntNosuid, false},
	"noexec": {MntNoexec, true}, "exec": {MntNoexec, false},
	"noatime": {MntNoatime, true}, "atime": {MntNoatime, false},
	"nosymfollow": {MntNosymfollow, true}, "symfollow": {MntNosymfollow, false},
	"sync": {MntSynchronous, true}, "async": {MntAsync, true},
}

// ignoredOptions mean nothing on FreeBSD: mount propagation and bind recursion (no mount namespaces),
// Linux time and pty knobs, and nodev (FreeBSD has device nodes only on devfs).
var ignoredOptions = map[string]bool{
	"bind": true, "rbind": true, "private": true, "rprivate": true, "shared": true, "rshared": true,
	"slave": true, "rslave": true, "unbindable": true, "runbindable": true, "relatime": true,
	"norelatime": true, "strictatime": true, "nostrictatime": true, "lazytime": true, "nolazytime": true,
	"dev": true, "nodev": true, "defaults": true, "newinstance": true, "diratime": true, "nodiratime": true,
	"iversion": true, "noiversion": true, "mand": true, "nomand": true, "silent": true, "loud": true,
	"ptmxmode": true,
}

// linuxOnly are mount types with no FreeBSD counterpart.
var linuxOnly = map[string]bool{"devpts": true, "mqueue": true, "cgroup": true, "cgroup2": true, "securityfs": true, "debugfs": true}

// MountFor translates one config mount, whose destination resolved to the host path dest, into an
// nmount call. Linux names are mapped: bind mounts are nullfs, proc is procfs (linprocfs in a Linux-ABI
// jail), sysfs is linsysfs there. devfs mounts get ruleset unless their options name one.
func MountFor(m specs.Mount, dest string, linuxABI bool, ruleset int) (Mount, error) {
	out := Mount{FSType: m.Type, Path: dest, Point: dest}
	bind := m.Type == "bind" || m.Type == "nullfs"
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			bind = true
		}
	}
	switch {
	case bind:
		out.FSType = "nullfs"
		if !filepath.IsAbs(m.Source) {
			return Mount{}, fmt.Errorf("source %q: a nullfs mount needs an absolute host path", m.Source)
		}
		out.Source = filepath.Clean(m.Source)
	case m.Type == "proc" || m.Type == "procfs":
		out.FSType = "procfs"
		if linuxABI {
			out.FSType = "linprocfs"
		}
	case m.Type == "sysfs":
		if !linuxABI {
			return Mount{}, fmt.Errorf("type sysfs: only in a Linux-ABI jail (linsysfs)")
		}
		out.FSType = "linsysfs"
	case m.Type == "fdesc":
		out.FSType = "fdescfs"
	case m.Type == "":
		return Mount{}, fmt.Errorf("type: must be set (devfs, nullfs, tmpfs, fdescfs, procfs, linprocfs, linsysfs, ...)")
	case linuxOnly[m.Type]:
		return Mount{}, fmt.Errorf("type %s exists only on Linux", m.Type)
	case m.Type == "devfs", m.Type == "tmpfs", m.Type == "fdescfs", m.Type == "linprocfs", m.Type == "linsysfs":
	default:
		// Any other file system (nfs, zfs, unionfs, ...) is the kernel's to accept, with its source.
		if m.Source != "" && m.Source != m.Type && m.Source != "none" {
			out.Source = m.Source
		}
	}
	if err := checkCString("source", m.Source); err != nil {
		return Mount{}, err
	}
	hasRuleset := false
	for _, o := range m.Options {
		key, val, hasVal := strings.Cut(o, "=")
		if f, ok := flagOptions[key]; ok && !hasVal {
			if f.set {
				out.Flags |= f.flag
			} else {
				out.Flags &^= f.flag
			}
			continue
		}
		if ignoredOptions[key] || key == "" {
			continue
		}
		if err := checkCString("options", o); err != nil {
			return Mount{}, err
		}
		if !hasVal {
			out.Options = append(out.Options, Bool(key, true))
			continue
		}
		if key == "ruleset" {
			hasRuleset = true
		}
		out.Options = append(out.Options, Str(key, val))
	}
	if out.FSType == "devfs" && !hasRuleset {
		out.Options = append(out.Options, Str("ruleset", fmt.Sprint(ruleset)))
	}
	return out, nil
}

// Mounts resolves and translates the config's mounts, in order, for the root at rootfs, seen by the jail
// at jailRoot (rootfs itself, or a read-only view of it). Destinations are resolved inside rootfs
// (symlinks included), so an image cannot point a mount at a host path.
func Mounts(rootfs, jailRoot string, s *specs.Spec) ([]Mount, error) {
	ruleset, err := DevfsRuleset(s)
	if err != nil {
		return nil, err
	}
	rootfs, jailRoot = filepath.Clean(rootfs), filepath.Clean(jailRoot)
	linuxABI := LinuxABI(s)
	out := make([]Mount, 0, len(s.Mounts))
	for i, m := range s.Mounts {
		if !filepath.IsAbs(m.Destination) {
			return nil, fmt.Errorf("mounts[%d].destination: %q is not absolute", i, m.Destination)
		}
		point, err := securejoin.SecureJoin(rootfs, m.Destination)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d].destination %s: %w", i, m.Destination, err)
		}
		if err := checkCString(fmt.Sprintf("mounts[%d].destination", i), point); err != nil {
			return nil, err
		}
		dest := jailRoot + strings.TrimPrefix(point, rootfs)
		mt, err := MountFor(m, dest, linuxABI, ruleset)
		if err != nil {
			return nil, fmt.Errorf("mounts[%d] (%s): %w", i, m.Destination, err)
		}
		mt.Point = point
		out = append(out, mt)
	}
	return out, nil
}

// RootView is the read-only nullfs view of rootfs at jailRoot that a config with root.readonly runs in.
func RootView(rootfs, jailRoot string) Mount {
	return Mount{FSType: "nullfs", Path: jailRoot, Point: jailRoot, Source: filepath.Clean(rootfs), Flags: MntRdonly}
}

// UnmountOrder picks, from the mount points mounted now (in mount order, as getfsstat(2) lists them),
// those below dir (and dir itself with self) and returns them last-mounted first, so no mount is busy
// with a child. A rootfs is not self: it may be a mount of the user's (a ZFS dataset); a view is.
func UnmountOrder(dir string, mounted []string, self bool) []string {
	root := filepath.Clean(dir)
	var out []string
	for i := len(mounted) - 1; i >= 0; i-- {
		p := filepath.Clean(mounted[i])
		if (self && p == root) || strings.HasPrefix(p, root+"/") {
			out = append(out, p)
		}
	}
	return out
}

// MountOptionNames are the mount options knast understands (flags and the ones it ignores on purpose),
// sorted; any other "key" or "key=value" is passed to the file system as is.
func MountOptionNames() []string {
	names := make([]string, 0, len(flagOptions)+len(ignoredOptions))
	for k := range flagOptions {
		names = append(names, k)
	}
	for k := range ignoredOptions {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}

// MountTypes are the mount types knast maps or mounts itself; others go to nmount unchanged.
func MountTypes() []string {
	return []string{"bind", "devfs", "fdesc", "fdescfs", "linprocfs", "linsysfs", "nullfs", "proc", "procfs", "sysfs", "tmpfs"}
}

// Nested reports, for each mount, whether its mount point lies inside an earlier mount of the list: its
// mount point can only be made once that one is mounted.
func Nested(mounts []Mount) []bool {
	out := make([]bool, len(mounts))
	for i := range mounts {
		for j := range i {
			if strings.HasPrefix(mounts[i].Path, mounts[j].Path+"/") {
				out[i] = true
				break
			}
		}
	}
	return out
}
