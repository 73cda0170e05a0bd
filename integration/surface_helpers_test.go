//go:build linux

package integration

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// surfaceEnv is a test env plus a private absolute cgroupsPath whose host directories are removed when
// the test ends (runtimes remove the leaf cgroup on delete, never the parents they created).
type surfaceEnv struct {
	*env
	// cgPath is "/knast-itest-<suite pid>-<test>"; a container of this test uses cgPath + "/" + id.
	cgPath string
	// leaves are the host cgroup directories seen for this test's containers, removed at the end.
	leaves []string
}

// newSurfaceEnv registers the cgroup cleanup before newEnv's leak check, so it runs after the leak
// check has force-deleted whatever a failing test left running.
func newSurfaceEnv(t *testing.T) *surfaceEnv {
	t.Helper()
	// One top-level directory per test: removing a shared parent would race with other tests' mkdirs.
	s := &surfaceEnv{cgPath: fmt.Sprintf("/knast-itest-%d-%s", os.Getpid(),
		strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))}
	t.Cleanup(s.removeCgroups)
	s.env = newEnv(t)
	return s
}

// withCgroup sets the container's cgroupsPath below the test's private path.
func (s *surfaceEnv) withCgroup(id string) func(*specs.Spec) {
	return func(sp *specs.Spec) { sp.Linux.CgroupsPath = s.cgPath + "/" + id }
}

// removeCgroups removes the cgroups the test's containers used and the test's own parents of them,
// deepest first; a directory that still holds processes stays and is reported.
func (s *surfaceEnv) removeCgroups() {
	var dirs []string
	for _, l := range s.leaves {
		dirs = append(dirs, l)
		// Climb to the suite's top directory, whatever mountpoint or base the leaf is under.
		for d := filepath.Dir(l); strings.Contains(d, "/knast-itest-"); d = filepath.Dir(d) {
			dirs = append(dirs, d)
		}
	}
	for _, m := range surfaceCgroupMounts() {
		dirs = append(dirs, filepath.Join(m.dir, s.cgPath))
	}
	slices.SortFunc(dirs, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	for _, d := range slices.Compact(dirs) {
		if err := syscall.Rmdir(d); err != nil && err != syscall.ENOENT && err != syscall.ENOTEMPTY && err != syscall.EBUSY {
			s.t.Errorf("cgroup cleanup: rmdir %s: %v", d, err)
		}
	}
}

// cgroupMount is one cgroup hierarchy of the host: a v1 mount with its controllers, or cgroup2.
type cgroupMount struct {
	dir         string
	controllers []string // v1 controllers and "name=..." options; empty for cgroup2
	v2          bool
}

// surfaceCgroupMounts lists the host's cgroup hierarchies from /proc/self/mountinfo.
func surfaceCgroupMounts() []cgroupMount {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []cgroupMount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			out = append(out, cgroupMount{dir: pf[4], v2: true})
		case "cgroup":
			var ctrls []string
			for _, o := range strings.Split(qf[2], ",") {
				switch o {
				case "rw", "ro", "relatime", "noatime", "nosuid", "nodev", "noexec", "clone_children", "xattr":
				default:
					ctrls = append(ctrls, o)
				}
			}
			out = append(out, cgroupMount{dir: pf[4], controllers: ctrls})
		}
	}
	return out
}

// surfaceProcCgroups parses /proc/<pid>/cgroup: hierarchy controllers ("" for cgroup2) to path.
func surfaceProcCgroups(pid int) (map[string]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) == 3 {
			m[parts[1]] = parts[2]
		}
	}
	return m, nil
}

// cgroupDir is the host directory of pid's cgroup in the hierarchy holding ctrl ("" for cgroup2).
func (s *surfaceEnv) cgroupDir(pid int, ctrl string) string {
	s.t.Helper()
	cgs, err := surfaceProcCgroups(pid)
	if err != nil {
		s.t.Fatalf("cgroups of %d: %v", pid, err)
	}
	for _, m := range surfaceCgroupMounts() {
		if m.v2 != (ctrl == "") || (!m.v2 && !slices.Contains(m.controllers, ctrl)) {
			continue
		}
		p, ok := cgroupPathFor(cgs, m)
		if !ok {
			continue
		}
		d := filepath.Join(m.dir, p)
		if !slices.Contains(s.leaves, d) {
			s.leaves = append(s.leaves, d)
		}
		return d
	}
	s.t.Fatalf("no %q hierarchy for pid %d (cgroups %v)", ctrl, pid, cgs)
	return ""
}

// cgroupPathFor finds a mount's entry in a parsed /proc/<pid>/cgroup.
func cgroupPathFor(cgs map[string]string, m cgroupMount) (string, bool) {
	if m.v2 {
		p, ok := cgs[""]
		return p, ok
	}
	for k, p := range cgs {
		ks := strings.Split(k, ",")
		slices.Sort(ks)
		cs := slices.Clone(m.controllers)
		slices.Sort(cs)
		if slices.Equal(ks, cs) {
			return p, true
		}
	}
	return "", false
}

// allCgroupDirs is the host directory of pid's cgroup in every v1 controller hierarchy (not named ones).
func (s *surfaceEnv) allCgroupDirs(pid int) map[string]string {
	s.t.Helper()
	out := map[string]string{}
	for _, m := range surfaceCgroupMounts() {
		if m.v2 || len(m.controllers) == 0 || strings.HasPrefix(m.controllers[0], "name=") {
			continue
		}
		out[m.controllers[0]] = s.cgroupDir(pid, m.controllers[0])
	}
	return out
}

// cgFile reads a cgroup file and trims it.
func (s *surfaceEnv) cgFile(dir, name string) string {
	s.t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		s.t.Errorf("reading %s: %v", name, err)
		return ""
	}
	return strings.TrimSpace(string(b))
}

// startReady runs the bundle detached and waits for "ready" on its stdout; it returns the init pid and
// the stdout file name.
func (s *surfaceEnv) startReady(id, bundle string) (int, string) {
	s.t.Helper()
	out := s.outFile()
	if r := s.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", bundle, id); r.Code != 0 || r.Err != nil {
		s.t.Fatalf("%s", r)
	}
	s.waitFileContains(out.Name(), "ready\n")
	return s.state(id).Pid, out.Name()
}

// readyScript prints ready and then keeps the init alive.
const readyScript = "echo ready; exec sleep 1000"

// waitCond polls cond until it is true or the test's deadline passes.
func (s *surfaceEnv) waitCond(what string, cond func() bool) {
	s.t.Helper()
	for !cond() {
		select {
		case <-s.ctx.Done():
			s.t.Fatalf("waiting for %s: %v", what, s.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// childPids lists the direct children of pid (host pids).
func childPids(pid int) []int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// bg starts a long-running knast invocation (events) writing to a file; wait returns its result.
func (s *surfaceEnv) bg(args ...string) (outName string, wait func() (int, error), stop func()) {
	s.t.Helper()
	ctx, cancel := context.WithCancel(s.ctx)
	cmd, _ := s.command(ctx, nil, args...)
	out := s.outFile()
	errF := s.outFile()
	cmd.Stdout, cmd.Stderr = out, errF
	if err := cmd.Start(); err != nil {
		cancel()
		s.t.Fatal(err)
	}
	done := make(chan struct{})
	var code int
	var werr error
	go func() {
		werr = cmd.Wait()
		code = cmd.ProcessState.ExitCode()
		close(done)
	}()
	s.t.Cleanup(func() { cancel(); <-done })
	wait = func() (int, error) {
		select {
		case <-done:
			return code, werr
		case <-s.ctx.Done():
			return -1, s.ctx.Err()
		}
	}
	return out.Name(), wait, cancel
}

// knastIn is knast bounded by d rather than the test's whole budget, for steps that may hang.
func (s *surfaceEnv) knastIn(d time.Duration, args ...string) result {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, d)
	defer cancel()
	return s.execCtx(ctx, nil, args...)
}

// statusWithin polls `state` for up to d until the container reaches status; it returns the last status.
func (s *surfaceEnv) statusWithin(d time.Duration, id, status string) string {
	s.t.Helper()
	deadline := time.Now().Add(d)
	for {
		st := s.state(id)
		if st.Status == status || time.Now().After(deadline) {
			return st.Status
		}
		time.Sleep(20 * time.Millisecond)
	}
}
