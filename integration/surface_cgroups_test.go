//go:build linux

package integration

import (
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

// TestSurfaceCgroupLimits reads each linux.resources value back from the host's cgroup files.
func TestSurfaceCgroupLimits(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		res   specs.LinuxResources
		ctrl  string
		files map[string]string // file in ctrl's cgroup dir → trimmed content
		// optional files are checked only when the host has them (memsw needs swap accounting).
		optional map[string]string
	}{
		{
			name: "memory",
			res: specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20),
				Reservation: ptr[int64](32 << 20), Swappiness: ptr[uint64](10), Swap: ptr[int64](128 << 20)}},
			ctrl: "memory",
			files: map[string]string{"memory.limit_in_bytes": "67108864", "memory.soft_limit_in_bytes": "33554432",
				"memory.swappiness": "10"},
			optional: map[string]string{"memory.memsw.limit_in_bytes": "134217728"},
		},
		{
			name: "cpu",
			res: specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000),
				Period: ptr[uint64](100000)}},
			ctrl:  "cpu",
			files: map[string]string{"cpu.shares": "512", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000"},
		},
		{
			name:  "cpuset",
			res:   specs.LinuxResources{CPU: &specs.LinuxCPU{Cpus: "0", Mems: "0"}},
			ctrl:  "cpuset",
			files: map[string]string{"cpuset.cpus": "0", "cpuset.mems": "0"},
		},
		{
			name:  "pids",
			res:   specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](10)}},
			ctrl:  "pids",
			files: map[string]string{"pids.max": "10"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSurfaceEnv(t)
			b := e.bundle(readyScript, e.withCgroup("ctr"), func(s *specs.Spec) {
				res := tc.res
				res.Devices = s.Linux.Resources.Devices
				s.Linux.Resources = &res
			})
			pid, _ := e.startReady("ctr", b)
			dir := e.cgroupDir(pid, tc.ctrl)
			if want := filepath.Join(e.cgPath, "ctr"); !strings.HasSuffix(dir, want) {
				t.Errorf("%s cgroup %s, want it at the absolute cgroupsPath %s", tc.ctrl, dir, want)
			}
			for f, want := range tc.files {
				if got := e.cgFile(dir, f); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			for f, want := range tc.optional {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Logf("host lacks %s: not checked", f)
					continue
				}
				if got := e.cgFile(dir, f); got != want {
					t.Errorf("%s = %q, want %q", f, got, want)
				}
			}
			e.mustKnast("delete", "--force", "ctr")
		})
	}
}

func TestSurfaceCgroupPidsLimitInside(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	// The shell, its $(seq) and a few sleeps fit under 6; the loop tries 20 background sleeps.
	b := e.bundle(`for i in $(seq 1 20); do sleep 100 & done; echo all-forked`, e.withCgroup("ctr"),
		func(s *specs.Spec) { s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr[int64](6)} })
	r := e.runResult("ctr", b)
	if strings.Contains(r.Stdout, "all-forked") || !strings.Contains(r.Stderr, "fork") {
		t.Errorf("20 forks under pids.limit 6: %s; want a fork failure inside", r)
	}
}

func TestSurfaceCgroupDevices(t *testing.T) {
	t.Parallel()
	// /dev/kmsg (c 1:11) is not among the devices runtimes allow by default; opening it for writing
	// writes nothing, and ": < dev" opens it for reading without reading.
	// The subshells keep a failed redirection from ending the script.
	const probe = `if (: > /dev/kmsg) 2>/dev/null; then echo w-ok; else echo w-denied; fi; ` +
		`if (: < /dev/kmsg) 2>/dev/null; then echo r-ok; else echo r-denied; fi; echo ready; exec sleep 1000`
	for _, tc := range []struct {
		name   string
		rules  []specs.LinuxDeviceCgroup
		inside string
		list   string // a devices.list line that must (or, with "!", must not) be present
	}{
		{name: "default-deny", inside: "w-denied r-denied ready", list: "!c 1:11"},
		{
			name:   "allow-write",
			rules:  []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](11), Access: "w"}},
			inside: "w-ok r-denied ready",
			list:   "c 1:11 w",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSurfaceEnv(t)
			b := e.bundle(probe, e.withCgroup("ctr"), func(s *specs.Spec) {
				s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/kmsg", Type: "c",
					Major: 1, Minor: 11, FileMode: ptr(os.FileMode(0o666)), UID: ptr[uint32](0), GID: ptr[uint32](0)})
				s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, tc.rules...)
			})
			pid, out := e.startReady("ctr", b)
			got, _ := os.ReadFile(out)
			if fields(string(got)) != tc.inside {
				t.Errorf("inside: %q, want %q", got, tc.inside)
			}
			list := e.cgFile(e.cgroupDir(pid, "devices"), "devices.list")
			lines := strings.Split(list, "\n")
			if want, neg := strings.CutPrefix(tc.list, "!"); neg {
				for _, l := range lines {
					if strings.HasPrefix(l, want) {
						t.Errorf("devices.list has %q:\n%s", l, list)
					}
				}
			} else if !strings.Contains("\n"+list+"\n", "\n"+tc.list+"\n") {
				t.Errorf("devices.list lacks %q:\n%s", tc.list, list)
			}
			if strings.Contains(list, "a *:* rwm") {
				t.Errorf("devices.list allows everything:\n%s", list)
			}
			e.mustKnast("delete", "--force", "ctr")
		})
	}
}

// TestSurfaceCgroupPaths checks where an absolute and a relative cgroupsPath land, and that delete
// removes the container's cgroup in every hierarchy.
func TestSurfaceCgroupPaths(t *testing.T) {
	t.Parallel()
	own, err := surfaceProcCgroups(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		relative bool
	}{{name: "absolute"}, {name: "relative", relative: true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSurfaceEnv(t)
			cg := e.cgPath + "/ctr"
			if tc.relative {
				cg = strings.TrimPrefix(cg, "/")
			}
			b := e.bundle(readyScript, func(s *specs.Spec) {
				s.Linux.CgroupsPath = cg
				s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr[int64](100)}
			})
			pid, _ := e.startReady("ctr", b)
			dirs := e.allCgroupDirs(pid)
			if len(dirs) == 0 {
				t.Fatal("no v1 controller hierarchies on this host")
			}
			mine, _ := surfaceProcCgroups(pid)
			for _, m := range surfaceCgroupMounts() {
				if m.v2 || strings.HasPrefix(m.controllers[0], "name=") {
					continue
				}
				got, _ := cgroupPathFor(mine, m)
				want := cg
				if tc.relative {
					// Like runc's cgroupfs driver: below the runtime's own cgroup in that hierarchy.
					base, _ := cgroupPathFor(own, m)
					want = path.Join(base, cg)
				}
				if got != want {
					t.Errorf("%v: container in %q, want %q", m.controllers, got, want)
				}
			}
			if got := e.cgFile(dirs["pids"], "pids.max"); got != "100" {
				t.Errorf("pids.max %q, want 100", got)
			}
			e.mustKnast("kill", "ctr", "KILL")
			e.waitStatus("ctr", "stopped")
			e.mustKnast("delete", "ctr")
			for ctrl, d := range dirs {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("%s cgroup %s after delete: %v, want it removed", ctrl, d, err)
				}
			}
		})
	}
}

// TestSurfaceCgroupUngrantable asks for limits this host's hierarchies cannot hold: create must fail
// clearly and leave no container, state or cgroup behind.
func TestSurfaceCgroupUngrantable(t *testing.T) {
	t.Parallel()
	blkio := ""
	for _, m := range surfaceCgroupMounts() {
		if !m.v2 && len(m.controllers) > 0 && m.controllers[0] == "blkio" {
			blkio = m.dir
		}
	}
	for _, tc := range []struct {
		name string
		file string // the blkio file whose presence would make the limit grantable
		res  specs.LinuxResources
	}{
		{name: "blkio-leaf-weight", file: "blkio.leaf_weight", res: specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: ptr[uint16](500)}}},
		{
			name: "throttle-missing-device",
			res: specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{
				{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 250, Minor: 250}, Rate: 1 << 20}}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if blkio == "" {
				t.Skip("no v1 blkio hierarchy: these limits are checked against cgroup v1 blkio")
			}
			if tc.file != "" {
				// The root cgroup lacks some files its children have: look in both.
				for _, pat := range []string{tc.file, "*/" + tc.file} {
					if m, _ := filepath.Glob(filepath.Join(blkio, pat)); len(m) > 0 {
						t.Skipf("host has %s: the limit is grantable here", m[0])
					}
				}
			}
			if _, err := os.Stat("/sys/dev/block/250:250"); err == nil {
				t.Skip("host has a block device 250:250")
			}
			e := newSurfaceEnv(t)
			b := e.bundle("echo ran > /tmp/marker", e.withCgroup("ctr"), func(s *specs.Spec) {
				res := tc.res
				res.Devices = s.Linux.Resources.Devices
				s.Linux.Resources = &res
			})
			r := e.knast("create", "--bundle", b, "ctr")
			if r.Code == 0 {
				t.Errorf("create with an ungrantable %s succeeded: %s", tc.name, r)
				e.knast("delete", "--force", "ctr")
			} else if !strings.Contains(r.Stderr, "blkio") {
				t.Errorf("create failed without naming blkio: %s", r)
			} else {
				t.Logf("create refused: %s", strings.TrimSpace(r.Stderr))
			}
			if l := e.mustKnast("list", "-q"); strings.TrimSpace(l.Stdout) != "" {
				t.Errorf("containers after a failed create: %q", l.Stdout)
			}
			for _, m := range surfaceCgroupMounts() {
				d := filepath.Join(m.dir, e.cgPath, "ctr")
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("cgroup %s after a failed create: %v, want none", d, err)
				}
			}
			if _, err := os.Stat(rootfsPath(b, "tmp/marker")); !os.IsNotExist(err) {
				t.Errorf("the container process ran: %v", err)
			}
		})
	}
}
