package spec

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Validate checks s and returns every problem found, errors.Join'ed, each as "field.path: problem".
//
// The checks are Linux-oriented: a spec that has a freebsd section and no linux section is treated as a
// FreeBSD spec and is not refused for lacking Linux-only fields (namespaces for hostname, sysctl, ...).
// Validate does no I/O: whether a joined namespace path is really the host's is the backend's question.
func Validate(s *specs.Spec) error {
	if s == nil {
		return errors.New("spec: is nil")
	}
	v := &validator{
		s: s,
		// With a freebsd section, a linux section holding only resources (FreeBSD's rctl limits) still
		// makes a FreeBSD config.
		linux: s.FreeBSD == nil || (s.Linux != nil && !onlyResources(s.Linux)),
		ns:    map[specs.LinuxNamespaceType]specs.LinuxNamespace{},
	}
	v.version()
	v.root()
	v.process()
	v.mounts()
	v.hooks()
	v.annotations()
	v.linuxSection()
	v.idmapMounts()
	v.utsNames()
	v.freebsdSection()
	return errors.Join(v.errs...)
}

// validator carries one Validate call's state.
type validator struct {
	s     *specs.Spec
	linux bool // the spec targets Linux: Linux-only cross-field rules apply
	ns    map[specs.LinuxNamespaceType]specs.LinuxNamespace
	errs  []error
}

func (v *validator) add(field, format string, args ...any) {
	v.errs = append(v.errs, errors.New(field+": "+fmt.Sprintf(format, args...)))
}

// isAbs reports whether p is absolute in the container's (slash-separated) namespace.
func isAbs(p string) bool { return strings.HasPrefix(p, "/") }

// absPath reports a missing or relative path at field.
func (v *validator) absPath(field, p string) {
	switch {
	case p == "":
		v.add(field, "must be set")
	case !isAbs(p):
		v.add(field, "%q is not absolute", p)
	}
}

func (v *validator) env(field string, env []string) {
	for i, e := range env {
		f := fmt.Sprintf("%s[%d]", field, i)
		switch k, _, ok := strings.Cut(e, "="); {
		case !ok:
			v.add(f, "%q has no '='", e)
		case k == "":
			v.add(f, "%q has an empty name", e)
		case strings.IndexByte(e, 0) >= 0:
			v.add(f, "contains a NUL byte")
		}
	}
}

func (v *validator) version() {
	if v.s.Version == "" {
		v.add("ociVersion", "must be set")
		return
	}
	major, err := semverMajor(v.s.Version)
	if err != nil {
		v.add("ociVersion", "%q is not a semantic version: %v", v.s.Version, err)
		return
	}
	if major != specs.VersionMajor {
		v.add("ociVersion", "%q: major version %d is not supported (want %d)", v.s.Version, major,
			specs.VersionMajor)
	}
}

// semverMajor parses a SemVer 2.0.0 version and returns its major number.
func semverMajor(ver string) (uint64, error) {
	rest, build, hasBuild := strings.Cut(ver, "+")
	if hasBuild {
		if err := semverIdents(build, false); err != nil {
			return 0, fmt.Errorf("build metadata: %w", err)
		}
	}
	core, pre, hasPre := strings.Cut(rest, "-")
	if hasPre {
		if err := semverIdents(pre, true); err != nil {
			return 0, fmt.Errorf("pre-release: %w", err)
		}
	}
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return 0, errors.New("want MAJOR.MINOR.PATCH")
	}
	var nums [3]uint64
	for i, p := range parts {
		if !isNumeric(p) || (len(p) > 1 && p[0] == '0') {
			return 0, fmt.Errorf("%q is not a number without leading zeros", p)
		}
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%q: %w", p, err)
		}
		nums[i] = n
	}
	return nums[0], nil
}

// semverIdents checks dot-separated identifiers; numeric pre-release identifiers must not have leading zeros.
func semverIdents(s string, pre bool) error {
	for id := range strings.SplitSeq(s, ".") {
		if id == "" {
			return errors.New("empty identifier")
		}
		for _, c := range id {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '-') {
				return fmt.Errorf("identifier %q has invalid characters", id)
			}
		}
		if pre && isNumeric(id) && len(id) > 1 && id[0] == '0' {
			return fmt.Errorf("identifier %q has a leading zero", id)
		}
	}
	return nil
}

func isNumeric(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

func (v *validator) root() {
	if v.s.Root == nil {
		v.add("root", "must be set")
		return
	}
	if v.s.Root.Path == "" {
		v.add("root.path", "must be set")
	}
}

func (v *validator) process() {
	p := v.s.Process
	if p == nil {
		return
	}
	switch {
	case len(p.Args) == 0:
		v.add("process.args", "must not be empty")
	case p.Args[0] == "":
		v.add("process.args[0]", "must not be empty")
	}
	for i, a := range p.Args {
		if strings.IndexByte(a, 0) >= 0 {
			v.add(fmt.Sprintf("process.args[%d]", i), "contains a NUL byte")
		}
	}
	v.absPath("process.cwd", p.Cwd)
	v.env("process.env", p.Env)
	if p.ConsoleSize != nil && !p.Terminal {
		v.add("process.consoleSize", "set without process.terminal")
	}
	if u := p.User.Umask; u != nil && *u > 0o777 {
		v.add("process.user.umask", "%#o is not a permission mask (max 0777)", *u)
	}
	v.rlimits(p.Rlimits)
	v.capabilities(p.Capabilities)
	if o := p.OOMScoreAdj; o != nil && (*o < -1000 || *o > 1000) {
		v.add("process.oomScoreAdj", "%d is outside [-1000, 1000]", *o)
	}
	v.scheduler(p.Scheduler)
	if io := p.IOPriority; io != nil {
		switch io.Class {
		case specs.IOPRIO_CLASS_RT, specs.IOPRIO_CLASS_BE, specs.IOPRIO_CLASS_IDLE:
		default:
			v.add("process.ioPriority.class", "unknown class %q", io.Class)
		}
		if io.Priority < 0 || io.Priority > 7 {
			v.add("process.ioPriority.priority", "%d is outside [0, 7]", io.Priority)
		}
	}
}

func (v *validator) rlimits(rls []specs.POSIXRlimit) {
	seen := map[string]int{}
	for i, rl := range rls {
		f := fmt.Sprintf("process.rlimits[%d]", i)
		if !knownRlimit(rl.Type, v.linux) {
			v.add(f+".type", "unknown rlimit %q", rl.Type)
		} else if j, dup := seen[rl.Type]; dup {
			v.add(f+".type", "duplicate %q (also rlimits[%d])", rl.Type, j)
		} else {
			seen[rl.Type] = i
		}
		if rl.Soft > rl.Hard {
			v.add(f, "soft limit %d is above hard limit %d", rl.Soft, rl.Hard)
		}
	}
}

func (v *validator) capabilities(c *specs.LinuxCapabilities) {
	if c == nil {
		return
	}
	known := capabilityNames()
	for _, set := range []struct {
		name string
		caps []string
	}{
		{"bounding", c.Bounding},
		{"effective", c.Effective},
		{"inheritable", c.Inheritable},
		{"permitted", c.Permitted},
		{"ambient", c.Ambient},
	} {
		for i, name := range set.caps {
			if !known[name] {
				v.add(fmt.Sprintf("process.capabilities.%s[%d]", set.name, i), "unknown capability %q", name)
			}
		}
	}
}

// scheduler follows sched_setattr(2): priority only for the real-time policies, runtime/deadline/period only
// for SCHED_DEADLINE.
func (v *validator) scheduler(s *specs.Scheduler) {
	if s == nil {
		return
	}
	switch s.Policy {
	case specs.SchedOther, specs.SchedFIFO, specs.SchedRR, specs.SchedBatch, specs.SchedISO, specs.SchedIdle,
		specs.SchedDeadline:
	case "":
		v.add("process.scheduler.policy", "must be set")
	default:
		v.add("process.scheduler.policy", "unknown policy %q", s.Policy)
	}
	if s.Nice < -20 || s.Nice > 19 {
		v.add("process.scheduler.nice", "%d is outside [-20, 19]", s.Nice)
	}
	if s.Priority != 0 && s.Policy != specs.SchedFIFO && s.Policy != specs.SchedRR {
		v.add("process.scheduler.priority", "only allowed with SCHED_FIFO or SCHED_RR")
	}
	if s.Policy != specs.SchedDeadline && (s.Runtime != 0 || s.Deadline != 0 || s.Period != 0) {
		v.add("process.scheduler", "runtime, deadline and period are only allowed with SCHED_DEADLINE")
	}
	for i, fl := range s.Flags {
		if !knownSchedFlag(fl) {
			v.add(fmt.Sprintf("process.scheduler.flags[%d]", i), "unknown flag %q", fl)
		}
	}
}

// isBind reports whether m is a bind mount, by type or by option as runc decides it.
func isBind(m specs.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

func (v *validator) mounts() {
	for i, m := range v.s.Mounts {
		f := fmt.Sprintf("mounts[%d]", i)
		// Destinations are resolved inside the rootfs at mount time; ".." cannot escape there, so cleaning
		// is the runtime's job and only absoluteness is checked here.
		v.absPath(f+".destination", m.Destination)
		bind := isBind(m)
		if bind && m.Source == "" {
			v.add(f+".source", "required for a bind mount")
		}
		if (len(m.UIDMappings) == 0) != (len(m.GIDMappings) == 0) {
			v.add(f, "uidMappings and gidMappings must be set together")
		}
		if (len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0) && !bind {
			v.add(f, "uidMappings/gidMappings need a bind mount")
		}
		v.idMappings(f+".uidMappings", m.UIDMappings)
		v.idMappings(f+".gidMappings", m.GIDMappings)
	}
}

// idmapMounts refuses what the runtime cannot ID-map: in a container with a user namespace, the
// ID-mapped mounts are made by the runtime outside the container, by cloning a bind source (as runc).
func (v *validator) idmapMounts() {
	if _, userNS := v.ns[specs.UserNamespace]; !userNS {
		return
	}
	for i, m := range v.s.Mounts {
		idmap := slices.Contains(m.Options, "idmap") || slices.Contains(m.Options, "ridmap")
		if idmap && !isBind(m) {
			v.add(fmt.Sprintf("mounts[%d]", i), "an ID-mapped mount in a container with a user namespace must be a bind mount")
		}
	}
}

func (v *validator) hooks() {
	h := v.s.Hooks
	if h == nil {
		return
	}
	for _, list := range []struct {
		name  string
		hooks []specs.Hook
	}{
		{"prestart", h.Prestart},
		{"createRuntime", h.CreateRuntime},
		{"createContainer", h.CreateContainer},
		{"startContainer", h.StartContainer},
		{"poststart", h.Poststart},
		{"poststop", h.Poststop},
	} {
		for i, hk := range list.hooks {
			f := fmt.Sprintf("hooks.%s[%d]", list.name, i)
			v.absPath(f+".path", hk.Path)
			if hk.Timeout != nil && *hk.Timeout <= 0 {
				v.add(f+".timeout", "must be > 0, got %d", *hk.Timeout)
			}
			v.env(f+".env", hk.Env)
		}
	}
}

func (v *validator) annotations() {
	if _, ok := v.s.Annotations[""]; ok {
		v.add("annotations", "empty key")
	}
}

// utsNames checks hostname and domainname; on Linux they need a UTS namespace that is not the host's. A
// joined one is accepted like runc does (CRI containers set the hostname inside the pod's namespace).
func (v *validator) utsNames() {
	for _, n := range []struct{ field, value string }{
		{"hostname", v.s.Hostname},
		{"domainname", v.s.Domainname},
	} {
		if n.value == "" {
			continue
		}
		if len(n.value) > 64 {
			v.add(n.field, "longer than 64 bytes")
		}
		if strings.IndexByte(n.value, 0) >= 0 {
			v.add(n.field, "contains a NUL byte")
		}
		if _, ok := v.ns[specs.UTSNamespace]; v.linux && !ok {
			v.add(n.field, "needs a uts namespace in linux.namespaces")
		}
	}
}

// sortedKeys returns m's keys in order so that errors come out deterministically.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}

// onlyResources reports whether l sets nothing but resources.
func onlyResources(l *specs.Linux) bool {
	c := *l
	c.Resources = nil
	return reflect.ValueOf(c).IsZero()
}
