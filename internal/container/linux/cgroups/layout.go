package cgroups

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
)

// v1Controllers are the controller names that may appear among a v1 mount's super options.
var v1Controllers = []string{
	"blkio", "cpu", "cpuacct", "cpuset", "devices", "freezer", "hugetlb", "memory",
	"misc", "net_cls", "net_prio", "perf_event", "pids", "rdma",
}

// Hierarchy is one mounted cgroup hierarchy as seen by this process.
type Hierarchy struct {
	Mountpoint string   // where it is mounted, e.g. /sys/fs/cgroup/memory
	Root       string   // the cgroup mounted there (mountinfo field 4), "/" unless bind-mounted or in a cgroupns
	Subsystems []string // v1: controllers and "name=..." of the hierarchy; v2: nil
	Own        string   // this process's cgroup in the hierarchy (/proc/self/cgroup), "" when unknown
}

// Layout is the host's cgroup layout.
type Layout struct {
	V1 []Hierarchy // one per distinct v1 hierarchy, in mountinfo order
	V2 *Hierarchy  // the cgroup2 hierarchy, nil when none is mounted
	// V2Controllers are the controllers in the cgroup2 root's cgroup.controllers; filled by the I/O
	// layer because it is a file, not mount data.
	V2Controllers []string
}

type cgroupMount struct {
	id         string // major:minor of the superblock, to drop duplicate mounts
	root       string
	mountpoint string
	fstype     string
	superOpts  []string
}

// unescapeMountinfo undoes the octal escapes (\040 for space, ...) mountinfo uses in paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1], '3') && isOctal(s[i+2], '7') && isOctal(s[i+3], '7') {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c, max byte) bool { return c >= '0' && c <= max }

// parseMountinfo returns the cgroup and cgroup2 mounts of a /proc/<pid>/mountinfo stream.
func parseMountinfo(r io.Reader) ([]cgroupMount, error) {
	var out []cgroupMount
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			return nil, fmt.Errorf("mountinfo line %d: no \" - \" separator", n)
		}
		f := strings.Fields(pre)
		g := strings.Fields(post)
		if len(f) < 6 || len(g) < 3 {
			return nil, fmt.Errorf("mountinfo line %d: too few fields", n)
		}
		if g[0] != "cgroup" && g[0] != "cgroup2" {
			continue
		}
		out = append(out, cgroupMount{
			id:         f[2],
			root:       unescapeMountinfo(f[3]),
			mountpoint: unescapeMountinfo(f[4]),
			fstype:     g[0],
			superOpts:  strings.Split(g[2], ","),
		})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	return out, nil
}

// parseProcCgroup parses /proc/<pid>/cgroup into "subsystem list" → path; the cgroup2 entry
// ("0::/path") has the key "".
func parseProcCgroup(r io.Reader) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			return nil, fmt.Errorf("cgroup line %d: %q: want id:controllers:path", n, line)
		}
		out[parts[1]] = parts[2]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read cgroup: %w", err)
	}
	return out, nil
}

func subsystemsOf(opts []string) []string {
	var s []string
	for _, o := range opts {
		if slices.Contains(v1Controllers, o) || strings.HasPrefix(o, "name=") {
			s = append(s, o)
		}
	}
	return s
}

// buildLayout combines the cgroup mounts and the process's cgroup membership. Several mounts of one
// hierarchy (bind mounts) keep the first; a v1 hierarchy whose subsystems the process does not list
// is still kept (Own stays "").
func buildLayout(mounts []cgroupMount, own map[string]string) Layout {
	var l Layout
	seen := map[string]bool{}
	for _, m := range mounts {
		if seen[m.id] {
			continue
		}
		seen[m.id] = true
		if m.fstype == "cgroup2" {
			if l.V2 != nil {
				continue
			}
			h := Hierarchy{Mountpoint: m.mountpoint, Root: m.root}
			if p, ok := own[""]; ok {
				h.Own = p
			}
			l.V2 = &h
			continue
		}
		subs := subsystemsOf(m.superOpts)
		if len(subs) == 0 {
			continue
		}
		h := Hierarchy{Mountpoint: m.mountpoint, Root: m.root, Subsystems: subs}
		for key, p := range own {
			if key == "" {
				continue
			}
			ks := strings.Split(key, ",")
			slices.Sort(ks)
			ss := slices.Clone(subs)
			slices.Sort(ss)
			if slices.Equal(ks, ss) {
				h.Own = p
			}
		}
		l.V1 = append(l.V1, h)
	}
	return l
}

// Unified reports whether the host is pure cgroup v2 (no v1 hierarchy mounted).
func (l Layout) Unified() bool { return l.V2 != nil && len(l.V1) == 0 }

// v1For returns the v1 hierarchy holding controller c, or nil.
func (l Layout) v1For(c string) *Hierarchy {
	for i := range l.V1 {
		if slices.Contains(l.V1[i].Subsystems, c) {
			return &l.V1[i]
		}
	}
	return nil
}

// onV2 reports whether controller c is usable on the cgroup2 side: listed in the root's
// cgroup.controllers and not bound to a v1 hierarchy. The core ("cgroup.*" files) and the eBPF
// device controller are always there when cgroup2 is mounted.
func (l Layout) onV2(c string) bool {
	if l.V2 == nil || l.v1For(c) != nil {
		return false
	}
	if c == ctrlCore || c == "devices" {
		return true
	}
	return slices.Contains(l.V2Controllers, c)
}

// relOwn is the process's cgroup relative to the hierarchy's mount root.
func relOwn(h Hierarchy) string {
	own := h.Own
	if own == "" {
		own = "/"
	}
	if h.Root != "/" && h.Root != "" {
		if own == h.Root {
			return "/"
		}
		if strings.HasPrefix(own, h.Root+"/") {
			return strings.TrimPrefix(own, h.Root)
		}
	}
	return own
}

// dirIn decides the directory of cgroup path p (from Resolve) in hierarchy h, as runc's cgroupfs
// driver does: an absolute path is taken from the mountpoint; a relative one is joined to this
// process's own cgroup (v1) or, on cgroup2, to its parent, because a cgroup with processes cannot
// enable controllers for children.
func dirIn(h Hierarchy, p string, v2 bool) string {
	if path.IsAbs(p) {
		return path.Join(h.Mountpoint, p)
	}
	base := relOwn(h)
	if v2 {
		base = path.Dir(base)
	}
	return path.Join(h.Mountpoint, base, p)
}
