package cgroups

import "log/slog"

// Cgroup is one container's cgroup across all hierarchies of the host.
type Cgroup struct {
	path   string
	layout Layout
	v1     []v1Dir // one per mounted v1 hierarchy (name=systemd included)
	v2     string  // the cgroup2 directory, "" when no cgroup2 is mounted
	log    *slog.Logger
}

type v1Dir struct {
	h   Hierarchy
	dir string
}

// SetLogger sets where warnings go (resources that are accepted but ignored, as runc warns about
// kernel memory limits). Without one they go to slog.Default().
func (c *Cgroup) SetLogger(l *slog.Logger) { c.log = l }

// Path is the cgroup path the Cgroup was made for.
func (c *Cgroup) Path() string { return c.path }

// Layout is the host layout detected by New.
func (c *Cgroup) Layout() Layout { return c.layout }

func (c *Cgroup) logger() *slog.Logger {
	if c.log != nil {
		return c.log
	}
	return slog.Default()
}

// v1DirFor is the directory of controller ctrl on its v1 hierarchy, "" when not mounted as v1.
func (c *Cgroup) v1DirFor(ctrl string) string {
	for _, d := range c.v1 {
		for _, s := range d.h.Subsystems {
			if s == ctrl {
				return d.dir
			}
		}
	}
	return ""
}

// Dirs lists every directory of the cgroup: the v1 ones, then the cgroup2 one.
func (c *Cgroup) Dirs() []string {
	return append(c.V1Dirs(), c.v2Dirs()...)
}

// V1Dirs lists the cgroup's directory on every v1 hierarchy. A process joins these itself (see
// linux.SpawnConfig.CgroupV1): a thread writing 0 to its own "tasks" file skips the global lock that
// moving another process takes, whose RCU grace period costs milliseconds per move.
func (c *Cgroup) V1Dirs() []string {
	var out []string
	for _, d := range c.v1 {
		out = append(out, d.dir)
	}
	return out
}

func (c *Cgroup) v2Dirs() []string {
	if c.v2 == "" {
		return nil
	}
	return []string{c.v2}
}

// newCgroup places path in layout l.
func newCgroup(path string, l Layout) *Cgroup {
	c := &Cgroup{path: path, layout: l}
	for _, h := range l.V1 {
		c.v1 = append(c.v1, v1Dir{h: h, dir: dirIn(h, path, false)})
	}
	if l.V2 != nil {
		c.v2 = dirIn(*l.V2, path, true)
	}
	return c
}
