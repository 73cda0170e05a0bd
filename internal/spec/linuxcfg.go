package spec

import (
	"fmt"
	"math"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// This file checks the "linux" section. It is plain Go on every OS: knast validates Linux configs anywhere.

// maxIDMapLines is the kernel's limit on lines in uid_map/gid_map (since Linux 4.15).
const maxIDMapLines = 340

func (v *validator) linuxSection() {
	l := v.s.Linux
	if l == nil {
		return
	}
	v.namespaces(l.Namespaces)
	v.userMappings(l)
	v.sysctl(l.Sysctl)
	v.timeOffsets(l.TimeOffsets)
	for i, d := range l.Devices {
		f := fmt.Sprintf("linux.devices[%d]", i)
		switch d.Type {
		case "c", "b", "u", "p":
		default:
			v.add(f+".type", "%q is not one of c, b, u, p", d.Type)
		}
		v.absPath(f+".path", d.Path)
	}
	if p := l.RootfsPropagation; p != "" && !knownPropagation(p) {
		v.add("linux.rootfsPropagation", "%q is not one of shared, slave, private, unbindable, "+
			"rshared, rslave, rprivate, runbindable", p)
	}
	for _, paths := range []struct {
		field string
		list  []string
	}{
		{"linux.maskedPaths", l.MaskedPaths},
		{"linux.readonlyPaths", l.ReadonlyPaths},
	} {
		for i, p := range paths.list {
			v.absPath(fmt.Sprintf("%s[%d]", paths.field, i), p)
		}
	}
	if p := l.Personality; p != nil && p.Domain != specs.PerLinux && p.Domain != specs.PerLinux32 {
		v.add("linux.personality.domain", "%q is not LINUX or LINUX32", p.Domain)
	}
	if r := l.Resources; r != nil {
		for i, d := range r.Devices {
			f := fmt.Sprintf("linux.resources.devices[%d]", i)
			switch d.Type {
			case "", "a", "b", "c":
			default:
				v.add(f+".type", "%q is not one of a, b, c", d.Type)
			}
			if strings.Trim(d.Access, "rwm") != "" {
				v.add(f+".access", "%q has letters other than r, w, m", d.Access)
			}
		}
	}
	v.seccomp(l.Seccomp)
	if r := l.IntelRdt; r != nil {
		if id := r.ClosID; id == "." || id == ".." || strings.Contains(id, "/") {
			v.add("linux.intelRdt.closID", "%q is not a valid resctrl group name", id)
		}
	}
	if mp := l.MemoryPolicy; mp != nil {
		if !knownMemoryPolicyMode(mp.Mode) {
			v.add("linux.memoryPolicy.mode", "unknown mode %q", mp.Mode)
		}
		for i, fl := range mp.Flags {
			if !knownMemoryPolicyFlag(fl) {
				v.add(fmt.Sprintf("linux.memoryPolicy.flags[%d]", i), "unknown flag %q", fl)
			}
		}
	}
	for _, name := range sortedKeys(l.NetDevices) {
		f := fmt.Sprintf("linux.netDevices[%q]", name)
		if !validIfname(name) {
			v.add(f, "not a valid interface name")
		}
		if n := l.NetDevices[name].Name; n != "" && !validIfname(n) {
			v.add(f+".name", "%q is not a valid interface name", n)
		}
	}
}

// validIfname follows the kernel's dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or space.
func validIfname(n string) bool {
	if n == "" || len(n) > 15 || n == "." || n == ".." {
		return false
	}
	return !strings.ContainsAny(n, "/: \t\n\x00")
}

func (v *validator) namespaces(list []specs.LinuxNamespace) {
	for i, ns := range list {
		f := fmt.Sprintf("linux.namespaces[%d]", i)
		if !knownNamespace(ns.Type) {
			v.add(f+".type", "unknown namespace type %q", ns.Type)
			continue
		}
		if _, dup := v.ns[ns.Type]; dup {
			v.add(f+".type", "duplicate %q namespace", ns.Type)
			continue
		}
		v.ns[ns.Type] = ns
		if ns.Path != "" && !isAbs(ns.Path) {
			v.add(f+".path", "%q is not absolute", ns.Path)
		}
	}
}

func (v *validator) userMappings(l *specs.Linux) {
	user, hasUser := v.ns[specs.UserNamespace]
	for _, m := range []struct {
		field string
		maps  []specs.LinuxIDMapping
	}{
		{"linux.uidMappings", l.UIDMappings},
		{"linux.gidMappings", l.GIDMappings},
	} {
		switch {
		case hasUser && user.Path == "" && len(m.maps) == 0:
			v.add(m.field, "required for a new user namespace")
		case !hasUser && len(m.maps) > 0:
			v.add(m.field, "set without a user namespace in linux.namespaces")
		}
		v.idMappings(m.field, m.maps)
	}
}

// idMappings applies the kernel's uid_map rules: non-empty ranges that do not wrap and do not overlap on
// either side.
func (v *validator) idMappings(field string, maps []specs.LinuxIDMapping) {
	if len(maps) > maxIDMapLines {
		v.add(field, "%d entries, the kernel allows at most %d", len(maps), maxIDMapLines)
		return
	}
	for i, m := range maps {
		f := fmt.Sprintf("%s[%d]", field, i)
		if m.Size == 0 {
			v.add(f+".size", "must be > 0")
			continue
		}
		if uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32 {
			v.add(f, "containerID range overflows")
			continue
		}
		if uint64(m.HostID)+uint64(m.Size) > math.MaxUint32 {
			v.add(f, "hostID range overflows")
			continue
		}
		for j, o := range maps[:i] {
			if o.Size == 0 {
				continue
			}
			if overlap(m.ContainerID, m.Size, o.ContainerID, o.Size) || overlap(m.HostID, m.Size, o.HostID, o.Size) {
				v.add(f, "overlaps %s[%d]", field[strings.LastIndexByte(field, '.')+1:], j)
				break
			}
		}
	}
}

func overlap(a, an, b, bn uint32) bool {
	return uint64(a) < uint64(b)+uint64(bn) && uint64(b) < uint64(a)+uint64(an)
}

// sysctl allows only keys the kernel namespaces, and only when the container has that namespace (runc's rules):
// anything else would change the host.
func (v *validator) sysctl(sc map[string]string) {
	for _, key := range sortedKeys(sc) {
		f := fmt.Sprintf("linux.sysctl[%q]", key)
		name := sysctlDots(key)
		need := specs.LinuxNamespaceType("")
		switch {
		case name == "":
			v.add(f, "empty key")
			continue
		case ipcSysctl(name):
			need = specs.IPCNamespace
		case strings.HasPrefix(name, "net."):
			need = specs.NetworkNamespace
		case name == "kernel.hostname" || name == "kernel.domainname":
			need = specs.UTSNamespace
			if field, value := utsField(v.s, name); value != "" && value != sc[key] {
				v.add(f, "conflicts with the %s field (%q)", field, value)
			}
		default:
			v.add(f, "not a namespaced sysctl; refusing to change it for the host")
			continue
		}
		if _, ok := v.ns[need]; !ok {
			v.add(f, "needs %s namespace in linux.namespaces", withArticle(need))
		}
	}
}

// utsField returns the spec field that also sets the UTS name behind the sysctl name, and its value.
func utsField(s *specs.Spec, name string) (field, value string) {
	if name == "kernel.hostname" {
		return "hostname", s.Hostname
	}
	return "domainname", s.Domainname
}

// sysctlDots converts a '/'-separated key ("net/ipv4/ip_forward") to the dotted form, swapping '.' and '/'
// as sysctl.d(5) does, so that an interface name containing dots survives.
func sysctlDots(key string) string {
	i := strings.IndexAny(key, "./")
	if i < 0 || key[i] == '.' {
		return key
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.':
			return '/'
		case '/':
			return '.'
		}
		return r
	}, key)
}

func withArticle(t specs.LinuxNamespaceType) string {
	if t == specs.IPCNamespace {
		return "an ipc"
	}
	return "a " + string(t)
}

func (v *validator) timeOffsets(offs map[string]specs.LinuxTimeOffset) {
	if len(offs) == 0 {
		return
	}
	// Offsets can only be written before the first process enters the namespace: a joined one is too late.
	switch t, ok := v.ns[specs.TimeNamespace]; {
	case !ok:
		v.add("linux.timeOffsets", "needs a time namespace in linux.namespaces")
	case t.Path != "":
		v.add("linux.timeOffsets", "needs a new time namespace, not a joined one")
	}
	for _, clock := range sortedKeys(offs) {
		f := fmt.Sprintf("linux.timeOffsets[%q]", clock)
		if clock != "monotonic" && clock != "boottime" {
			v.add(f, "unknown clock (want monotonic or boottime)")
		}
		if ns := offs[clock].Nanosecs; ns >= 1_000_000_000 {
			v.add(f+".nanosecs", "%d is not below 1000000000", ns)
		}
	}
}

func (v *validator) seccomp(sc *specs.LinuxSeccomp) {
	if sc == nil {
		return
	}
	if !knownSeccompAction(sc.DefaultAction) {
		v.add("linux.seccomp.defaultAction", "unknown action %q", sc.DefaultAction)
	}
	for i, a := range sc.Architectures {
		if !knownArch(a) {
			v.add(fmt.Sprintf("linux.seccomp.architectures[%d]", i), "unknown architecture %q", a)
		}
	}
	for i, sys := range sc.Syscalls {
		f := fmt.Sprintf("linux.seccomp.syscalls[%d]", i)
		if len(sys.Names) == 0 {
			v.add(f+".names", "must not be empty")
		}
		if !knownSeccompAction(sys.Action) {
			v.add(f+".action", "unknown action %q", sys.Action)
		}
		for j, a := range sys.Args {
			if !knownSeccompOp(a.Op) {
				v.add(fmt.Sprintf("%s.args[%d].op", f, j), "unknown operator %q", a.Op)
			}
			if a.Index > 5 {
				v.add(fmt.Sprintf("%s.args[%d].index", f, j), "%d is above 5", a.Index)
			}
		}
	}
}
