//go:build linux

package benchutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// RemoveCgroups removes the cgroup directory name (relative to each hierarchy's root) in every mounted
// cgroup hierarchy, deepest first. It returns the cgroups below name that were still there (a runtime
// should have removed its container's own), and an error for any that could not be removed (one still
// holding processes).
func RemoveCgroups(name string) (left []string, err error) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("list cgroup mounts: %w", err)
	}
	var errs []error
	seen := map[string]bool{}
	for _, m := range infos {
		top := filepath.Join(m.Mountpoint, name)
		if seen[top] {
			continue
		}
		seen[top] = true
		var dirs []string
		werr := filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		if errors.Is(werr, fs.ErrNotExist) {
			continue
		}
		if werr != nil {
			errs = append(errs, fmt.Errorf("walk %s: %w", top, werr))
			continue
		}
		// WalkDir lists parents before children: remove in reverse.
		for i := len(dirs) - 1; i >= 0; i-- {
			if dirs[i] != top {
				left = append(left, dirs[i])
			}
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("remove cgroup %s: %w", dirs[i], err))
			}
		}
	}
	return left, errors.Join(errs...)
}

// ReapOrphans reaps every exited child without blocking. Call it only while no exec.Cmd runs, so it
// cannot steal a status that os/exec waits for.
func ReapOrphans() {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
	}
}

// Machine describes the host in one line: kernel, CPU, core count, cgroup layout, Go version.
func Machine() string {
	var u unix.Utsname
	kernel := "?"
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Machine[:])
	}
	cpu := "?"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	cg := "cgroup v1/hybrid"
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		cg = "cgroup v2"
	}
	return fmt.Sprintf("Linux %s, %s, %d CPUs, %s, %s", kernel, cpu, runtime.NumCPU(), cg, runtime.Version())
}

// LoadAvg is the 1, 5 and 15 minute load averages as /proc/loadavg shows them ("0.12 0.34 0.56"),
// or "?" when they cannot be read: a busy host explains noisy timings.
func LoadAvg() string {
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			return strings.Join(f[:3], " ")
		}
	}
	return "?"
}
