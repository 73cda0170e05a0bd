package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// DetectLayout reads the host's cgroup layout from /proc/self/mountinfo, /proc/self/cgroup and the
// cgroup2 root's cgroup.controllers.
func DetectLayout() (Layout, error) {
	mi, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroup layout: %w", err)
	}
	defer mi.Close()
	mounts, err := parseMountinfo(mi)
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroup layout: /proc/self/mountinfo: %w", err)
	}
	pc, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroup layout: %w", err)
	}
	defer pc.Close()
	own, err := parseProcCgroup(pc)
	if err != nil {
		return Layout{}, fmt.Errorf("detect cgroup layout: /proc/self/cgroup: %w", err)
	}
	l := buildLayout(mounts, own)
	if l.V2 == nil && len(l.V1) == 0 {
		return l, errors.New("detect cgroup layout: no cgroup filesystem is mounted")
	}
	if l.V2 != nil {
		b, err := os.ReadFile(filepath.Join(l.V2.Mountpoint, "cgroup.controllers"))
		if err != nil {
			return l, fmt.Errorf("detect cgroup layout: %w", err)
		}
		l.V2Controllers = strings.Fields(string(b))
	}
	return l, nil
}

// New finds where cgroup path (as returned by Resolve) lives on this host. It writes nothing.
func New(path string) (*Cgroup, error) {
	if path == "" {
		return nil, errors.New("cgroup path is empty")
	}
	l, err := DetectLayout()
	if err != nil {
		return nil, err
	}
	return newCgroup(path, l), nil
}

// Exists reports whether the cgroup has a directory on any hierarchy.
func Exists(path string) bool {
	c, err := New(path)
	if err != nil {
		return false
	}
	for _, d := range c.Dirs() {
		if st, err := os.Stat(d); err == nil && st.IsDir() {
			return true
		}
	}
	return false
}

// fileError names the spec field and the file of a failed cgroup write.
type fileError struct {
	field, path string
	err         error
}

func (e *fileError) Error() string {
	msg := e.err.Error()
	if errors.Is(e.err, unix.ENOENT) {
		msg = "no such file"
		if h := hintFor(filepath.Base(e.path)); h != "" {
			msg += " (" + h + ")"
		}
	}
	if e.field == "" {
		return e.path + ": " + msg
	}
	return e.field + ": " + e.path + ": " + msg
}

func (e *fileError) Unwrap() error { return e.err }

// writeFile writes one value with a single write(2), as cgroup files want, returning the errno.
func writeFile(path, value string) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	for {
		_, err = unix.Write(fd, []byte(value))
		if err != unix.EINTR {
			return err
		}
	}
}

func readFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	return string(b), err
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Create makes the cgroup in every hierarchy, then applies r followed by DefaultDevices (runc's
// order: the config's device rules, then its defaults). What it made is removed again on error.
func (c *Cgroup) Create(r *specs.LinuxResources) error {
	full := withDefaultDevices(r)
	if err := checkResources(&full); err != nil {
		return err
	}
	var made []string
	undo := func() {
		for _, d := range slices.Backward(made) {
			_ = unix.Rmdir(d)
		}
	}
	for _, d := range c.v1 {
		m, err := mkdirs(d.h.Mountpoint, d.dir, nil)
		made = append(made, m...)
		if err != nil {
			undo()
			return err
		}
		if slices.Contains(d.h.Subsystems, "cpuset") {
			if err := initCpuset(d.h.Mountpoint, d.dir, m); err != nil {
				undo()
				return err
			}
		}
	}
	if c.v2 != "" {
		m, err := mkdirs(c.layout.V2.Mountpoint, c.v2, c.enableControllers(&full))
		made = append(made, m...)
		if err != nil {
			undo()
			return err
		}
	}
	if err := c.apply(&full, false); err != nil {
		undo()
		return err
	}
	return nil
}

// withDefaultDevices is a copy of r (nil: none) with DefaultDevices after its own device rules: runc's
// order, the config's rules first.
func withDefaultDevices(r *specs.LinuxResources) specs.LinuxResources {
	full := specs.LinuxResources{}
	if r != nil {
		full = *r
	}
	full.Devices = slices.Concat(full.Devices, DefaultDevices())
	return full
}

// mkdirs creates dir and its missing parents below mountpoint, calling before(parent) ahead of
// each level; it returns the directories it created, outermost first.
func mkdirs(mountpoint, dir string, before func(parent string) error) ([]string, error) {
	rel, err := filepath.Rel(mountpoint, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return nil, fmt.Errorf("cgroup %s is outside its hierarchy %s", dir, mountpoint)
	}
	var made []string
	cur := mountpoint
	for _, part := range strings.Split(rel, "/") {
		if part == "." || part == "" {
			continue
		}
		if before != nil {
			if err := before(cur); err != nil {
				return made, err
			}
		}
		next := filepath.Join(cur, part)
		if err := unix.Mkdir(next, 0o755); err != nil {
			if err != unix.EEXIST {
				return made, &fileError{path: next, err: fmt.Errorf("mkdir: %w", err)}
			}
		} else {
			made = append(made, next)
		}
		cur = next
	}
	return made, nil
}

// initCpuset fills empty cpuset.cpus and cpuset.mems from the parent on every level below the
// mountpoint: a v1 cpuset cgroup starts empty and refuses tasks and limits until they are set.
//
// Each such write rebuilds the scheduler domains (about a millisecond), so an intermediate level made
// here (in made) also gets cgroup.clone_children: the kernel then fills its later children at mkdir.
func initCpuset(mountpoint, dir string, made []string) error {
	rel, err := filepath.Rel(mountpoint, dir)
	if err != nil {
		return fmt.Errorf("cpuset %s: %w", dir, err)
	}
	cur := mountpoint
	for _, part := range strings.Split(rel, "/") {
		if part == "." {
			continue
		}
		parent := cur
		cur = filepath.Join(cur, part)
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := readFile(filepath.Join(cur, f))
			if err != nil {
				return &fileError{field: fCPU, path: filepath.Join(cur, f), err: err}
			}
			if strings.TrimSpace(v) != "" {
				continue
			}
			pv, err := readFile(filepath.Join(parent, f))
			if err != nil {
				return &fileError{field: fCPU, path: filepath.Join(parent, f), err: err}
			}
			if err := writeFile(filepath.Join(cur, f), strings.TrimSpace(pv)); err != nil {
				return &fileError{field: fCPU, path: filepath.Join(cur, f), err: err}
			}
		}
		if cur != dir && slices.Contains(made, cur) {
			p := filepath.Join(cur, "cgroup.clone_children")
			if err := writeFile(p, "1"); err != nil {
				return &fileError{field: fCPU, path: p, err: err}
			}
		}
	}
	return nil
}

// enableControllers returns the step run on each cgroup2 ancestor: enable there every controller
// it offers (as runc does), failing only when one that r needs cannot be enabled.
func (c *Cgroup) enableControllers(r *specs.LinuxResources) func(string) error {
	needed := map[string]bool{}
	_, keep2, err := plan(c.layout, v1Files(r, v1State{}), v2Files(r, v2State{}))
	if err == nil {
		for _, w := range keep2 {
			if w.ctrl != ctrlCore && w.ctrl != "devices" {
				needed[w.ctrl] = true
			}
		}
	}
	return func(dir string) error {
		b, err := readFile(filepath.Join(dir, "cgroup.controllers"))
		if err != nil {
			return &fileError{path: filepath.Join(dir, "cgroup.controllers"), err: err}
		}
		avail := strings.Fields(b)
		if len(avail) == 0 {
			return nil
		}
		sc := filepath.Join(dir, "cgroup.subtree_control")
		cur, _ := readFile(sc)
		var want []string
		for _, a := range avail {
			if !slices.Contains(strings.Fields(cur), a) {
				want = append(want, "+"+a)
			}
		}
		if len(want) == 0 || writeFile(sc, strings.Join(want, " ")) == nil {
			return nil
		}
		for _, w := range want {
			if err := writeFile(sc, w); err != nil && needed[w[1:]] {
				return &fileError{field: "enable the " + w[1:] + " controller", path: sc, err: err}
			}
		}
		return nil
	}
}

// Update applies r to the existing cgroup (knast update). Device rules are ignored, as runc's
// update ignores them; memory.checkBeforeUpdate refuses a limit below the current usage.
func (c *Cgroup) Update(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	cp := *r
	cp.Devices = nil
	if err := checkResources(&cp); err != nil {
		return err
	}
	return c.apply(&cp, true)
}

func (c *Cgroup) apply(r *specs.LinuxResources, update bool) error {
	var st1 v1State
	var st2 v2State
	if d := c.v1DirFor("memory"); d != "" {
		if v, err := readFile(filepath.Join(d, "memory.limit_in_bytes")); err == nil {
			st1.memLimit, _ = parseCgroupUint(v)
		}
	}
	if d := c.v1DirFor("blkio"); d != "" {
		st1.blkioBFQ = exists(filepath.Join(d, "blkio.bfq.weight")) && !exists(filepath.Join(d, "blkio.weight"))
	}
	if c.v2 != "" {
		st2.ioBFQ = exists(filepath.Join(c.v2, "io.bfq.weight"))
		if v, err := readFile(filepath.Join(c.v2, "cpu.max")); err == nil {
			if f := strings.Fields(v); len(f) > 0 {
				st2.cpuMaxQuota = f[0]
			}
		}
	}
	keep1, keep2, err := plan(c.layout, v1Files(r, st1), v2Files(r, st2))
	if err != nil {
		return err
	}
	if update && r.Memory != nil && r.Memory.CheckBeforeUpdate != nil && *r.Memory.CheckBeforeUpdate && r.Memory.Limit != nil && *r.Memory.Limit > 0 {
		if err := c.checkMemoryUsage(uint64(*r.Memory.Limit)); err != nil {
			return err
		}
	}
	var retry []struct {
		w   fileWrite
		dir string
	}
	do := func(w fileWrite, dir string, final bool) error {
		switch {
		case w.warn != "":
			c.logger().Warn(w.field+": "+w.warn, "cgroup", c.path)
			return nil
		case w.bpf:
			return c.applyDeviceFilter(r.Devices)
		}
		p := filepath.Join(dir, w.file)
		err := writeFile(p, w.value)
		switch {
		case err == nil:
		case w.optional && err == unix.ENOENT:
			return nil
		case w.retryLast && !final && err == unix.EINVAL:
			retry = append(retry, struct {
				w   fileWrite
				dir string
			}{w, dir})
			return nil
		default:
			return &fileError{field: w.field, path: p, err: err}
		}
		if w.verify {
			got, err := readFile(p)
			if err != nil {
				return &fileError{field: w.field, path: p, err: err}
			}
			if strings.TrimSpace(got) != w.value {
				return fmt.Errorf("%s: %s: the kernel set %s instead of %s (out of range)", w.field, p, strings.TrimSpace(got), w.value)
			}
		}
		return nil
	}
	for _, w := range keep1 {
		if err := do(w, c.v1DirFor(w.ctrl), false); err != nil {
			return err
		}
	}
	for _, w := range keep2 {
		if err := do(w, c.v2, false); err != nil {
			return err
		}
	}
	for _, rw := range retry {
		if err := do(rw.w, rw.dir, true); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cgroup) checkMemoryUsage(limit uint64) error {
	p := ""
	if d := c.v1DirFor("memory"); d != "" {
		p = filepath.Join(d, "memory.usage_in_bytes")
	} else if c.v2 != "" {
		p = filepath.Join(c.v2, "memory.current")
	}
	if p == "" {
		return nil
	}
	v, err := readFile(p)
	if err != nil {
		return &fileError{field: fMemory + ".checkBeforeUpdate", path: p, err: err}
	}
	usage, err := parseCgroupUint(v)
	if err != nil {
		return fmt.Errorf("%s.checkBeforeUpdate: %s: %w", fMemory, p, err)
	}
	if usage > limit {
		return fmt.Errorf("%s.limit: %d is below the current usage %d (checkBeforeUpdate)", fMemory, limit, usage)
	}
	return nil
}

func (c *Cgroup) applyDeviceFilter(ds []specs.LinuxDeviceCgroup) error {
	rules, err := deviceRules(ds)
	if err != nil {
		return err
	}
	fd, err := unix.Open(c.v2, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return &fileError{field: "linux.resources.devices", path: c.v2, err: err}
	}
	defer unix.Close(fd)
	if err := attachDeviceFilter(fd, deviceFilter(rules)); err != nil {
		return fmt.Errorf("linux.resources.devices: %s: %w", c.v2, err)
	}
	return nil
}

// Enter moves pid into the cgroup on every hierarchy.
func (c *Cgroup) Enter(pid int) error {
	for _, d := range c.Dirs() {
		p := filepath.Join(d, "cgroup.procs")
		var err error
		for range 5 {
			// EINVAL: the task may still be in TASK_NEW right after fork.
			if err = writeFile(p, strconv.Itoa(pid)); err != unix.EINVAL {
				break
			}
			time.Sleep(30 * time.Millisecond)
		}
		if err != nil {
			return &fileError{field: "move pid " + strconv.Itoa(pid), path: p, err: err}
		}
	}
	return nil
}

// MakeV2Dir creates only the cgroup2 directory (enabling controllers on the way, as Create does) and
// opens it for CLONE_INTO_CGROUP: a child can be cloned into it while Create does the rest. (nil, nil)
// when there is no cgroup2 side. Create then finds the directory in place; Destroy removes it.
func (c *Cgroup) MakeV2Dir(r *specs.LinuxResources) (*os.File, error) {
	if c.v2 == "" {
		return nil, nil
	}
	full := withDefaultDevices(r)
	if _, err := mkdirs(c.layout.V2.Mountpoint, c.v2, c.enableControllers(&full)); err != nil {
		return nil, err
	}
	return c.V2Dir()
}

// V2Dir opens the cgroup2 directory with O_PATH for clone3's CLONE_INTO_CGROUP; (nil, nil) when
// there is no cgroup2 side.
func (c *Cgroup) V2Dir() (*os.File, error) {
	if c.v2 == "" {
		return nil, nil
	}
	fd, err := unix.Open(c.v2, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &fileError{path: c.v2, err: err}
	}
	return os.NewFile(uintptr(fd), c.v2), nil
}

// Pids lists every process in the cgroup and its descendants, on every hierarchy, sorted.
func (c *Cgroup) Pids() ([]int, error) {
	seen := map[int]bool{}
	for _, d := range c.Dirs() {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			if !e.IsDir() {
				return nil
			}
			b, err := readFile(filepath.Join(p, "cgroup.procs"))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					return nil
				}
				return err
			}
			for _, f := range strings.Fields(b) {
				pid, err := strconv.Atoi(f)
				if err != nil {
					return fmt.Errorf("%s/cgroup.procs: %q: %w", p, f, err)
				}
				seen[pid] = true
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list pids: %w", err)
		}
	}
	pids := make([]int, 0, len(seen))
	for p := range seen {
		pids = append(pids, p)
	}
	slices.Sort(pids)
	return pids, nil
}

// Destroy removes the cgroup (and cgroups made inside it) everywhere, deepest first, retrying
// briefly while the kernel still reports it busy. A cgroup already gone is not an error.
func (c *Cgroup) Destroy() error {
	var errs []error
	for _, d := range c.Dirs() {
		if err := removeTree(d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func removeTree(dir string) error {
	// Most cgroups have no children and no tasks left: one rmdir, no listing of their many files.
	switch err := unix.Rmdir(dir); err {
	case nil, unix.ENOENT:
		return nil
	case unix.EBUSY: // child cgroups, or tasks still being released: below
	default:
		return &fileError{field: "remove cgroup", path: dir, err: err}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("remove cgroup: %w", err)
	}
	for _, e := range ents {
		if e.IsDir() {
			if err := removeTree(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	delay := 10 * time.Millisecond
	for i := 0; ; i++ {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		// EBUSY: exiting tasks are still being released.
		if err != unix.EBUSY || i == 6 {
			return &fileError{field: "remove cgroup", path: dir, err: err}
		}
		time.Sleep(delay)
		delay *= 2
	}
}
