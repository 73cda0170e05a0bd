package cgroups

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root to create cgroups")
	}
}

// testCgroup makes a Cgroup under a per-test parent and removes both when the test ends.
func testCgroup(t *testing.T) *Cgroup {
	t.Helper()
	needRoot(t)
	parent := fmt.Sprintf("/knast-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c, err := New(parent + "/c")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		for _, p := range pidsOrNil(c) {
			_ = syscallKill(p)
		}
		if err := c.Destroy(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		p, err := New(parent)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		if err := p.Destroy(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return c
}

func pidsOrNil(c *Cgroup) []int {
	p, _ := c.Pids()
	return p
}

func syscallKill(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return strings.TrimSpace(string(b))
}

// ctrlFile is the path of file for controller ctrl, skipping when the host lacks the controller.
func ctrlFile(t *testing.T, c *Cgroup, ctrl, v1file, v2file string) string {
	t.Helper()
	if d := c.v1DirFor(ctrl); d != "" {
		return filepath.Join(d, v1file)
	}
	if c.v2 != "" && c.layout.onV2(ctrl) {
		return filepath.Join(c.v2, v2file)
	}
	t.Skipf("skipping: the %s controller is not mounted on this host", ctrl)
	return ""
}

// startWaiting starts sh running script once release is called, so the test can move it into a
// cgroup first. Its output goes to the returned command's Stdout buffer.
func startWaiting(t *testing.T, script string) (*exec.Cmd, func()) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "read x; "+script)
	cmd.Stdin = r
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sh: %v", err)
	}
	r.Close()
	t.Cleanup(func() {
		w.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd, func() {
		w.Write([]byte("go\n"))
		w.Close()
	}
}

func waitComm(t *testing.T, pid int, comm string) {
	t.Helper()
	for range 500 {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err == nil && strings.TrimSpace(string(b)) == comm {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("pid %d did not become %s", pid, comm)
}

func TestCreateApplyEnterFreezeStatsDestroy(t *testing.T) {
	c := testCgroup(t)
	r := &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20)},
		CPU: &specs.LinuxCPU{
			Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000),
			Cpus: "0", Mems: "0",
		},
		Pids: &specs.LinuxPids{Limit: ptr[int64](10)},
		Devices: []specs.LinuxDeviceCgroup{
			{Allow: false, Access: "rwm"},
			{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rw"},
		},
	}
	if err := c.Create(r); err != nil {
		t.Fatalf("Create: %v", err)
	}
	for _, d := range c.Dirs() {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("cgroup dir missing after Create: %v", err)
		}
	}

	checks := []struct {
		ctrl, v1, v2, want string
	}{
		{"memory", "memory.limit_in_bytes", "memory.max", strconv.Itoa(64 << 20)},
		{"cpu", "cpu.shares", "cpu.weight", map[bool]string{true: "512", false: strconv.FormatUint(sharesToWeight(512), 10)}[c.v1DirFor("cpu") != ""]},
		{"cpu", "cpu.cfs_quota_us", "cpu.max", map[bool]string{true: "50000", false: "50000 100000"}[c.v1DirFor("cpu") != ""]},
		{"cpuset", "cpuset.cpus", "cpuset.cpus", "0"},
		{"cpuset", "cpuset.mems", "cpuset.mems", "0"},
		{"pids", "pids.max", "pids.max", "10"},
	}
	for _, ck := range checks {
		t.Run(ck.ctrl+"/"+ck.v1, func(t *testing.T) {
			if got := read(t, ctrlFile(t, c, ck.ctrl, ck.v1, ck.v2)); got != ck.want {
				t.Errorf("got %q, want %q", got, ck.want)
			}
		})
	}
	if d := c.v1DirFor("devices"); d != "" {
		list := read(t, filepath.Join(d, "devices.list"))
		for _, want := range []string{"c 1:3 rw", "c *:* m", "b *:* m", "c 136:* rwm"} {
			if !strings.Contains(list, want) {
				t.Errorf("devices.list lacks %q:\n%s", want, list)
			}
		}
		if strings.Contains(list, "a *:* rwm") {
			t.Errorf("devices.list still allows everything:\n%s", list)
		}
	}

	// The shell execs sleep only once it is inside, so sleep's memory is charged to the cgroup.
	cmd, release := startWaiting(t, "exec sleep 100")
	pid := cmd.Process.Pid
	if err := c.Enter(pid); err != nil {
		t.Fatalf("Enter: %v", err)
	}
	release()
	waitComm(t, pid, "sleep")
	pids, err := c.Pids()
	if err != nil {
		t.Fatalf("Pids: %v", err)
	}
	if len(pids) != 1 || pids[0] != pid {
		t.Errorf("Pids = %v, want [%d]", pids, pid)
	}
	procCg := read(t, fmt.Sprintf("/proc/%d/cgroup", pid))
	rel := strings.TrimPrefix(c.Path(), "/")
	for _, line := range strings.Split(procCg, "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && !strings.HasSuffix(parts[2], rel) {
			t.Errorf("/proc/%d/cgroup: %q is not in %s", pid, line, c.Path())
		}
	}

	st, err := c.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if c.v1DirFor("pids") != "" || c.layout.onV2("pids") {
		if st.Pids.Current != 1 || st.Pids.Limit != 10 {
			t.Errorf("Stats pids = %+v, want current 1 limit 10", st.Pids)
		}
	}
	if c.v1DirFor("memory") != "" || c.layout.onV2("memory") {
		if st.Memory.Usage.Limit != 64<<20 || st.Memory.Usage.Usage == 0 || st.Memory.Usage.Usage > 64<<20 || len(st.Memory.Raw) == 0 {
			t.Errorf("Stats memory = %+v, want limit 64MiB and some usage", st.Memory.Usage)
		}
	}

	if err := c.Freeze(); err != nil {
		t.Fatalf("Freeze: %v", err)
	}
	if f, err := c.Frozen(); err != nil || !f {
		t.Errorf("Frozen = %v, %v after Freeze", f, err)
	}
	if d := c.v1DirFor("freezer"); d != "" {
		if got := read(t, filepath.Join(d, "freezer.state")); got != "FROZEN" {
			t.Errorf("freezer.state = %q", got)
		}
	}
	state := procState(t, pid)
	if state != "T" && state != "D" && state != "S" {
		t.Errorf("frozen process state %q", state)
	}
	if err := c.Thaw(); err != nil {
		t.Fatalf("Thaw: %v", err)
	}
	if f, err := c.Frozen(); err != nil || f {
		t.Errorf("Frozen = %v, %v after Thaw", f, err)
	}

	if err := c.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](96 << 20)}}); err != nil {
		t.Fatalf("Update: %v", err)
	}
	if got := read(t, ctrlFile(t, c, "memory", "memory.limit_in_bytes", "memory.max")); got != strconv.Itoa(96<<20) {
		t.Errorf("memory limit after Update = %s", got)
	}
	err = c.Update(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](4096), CheckBeforeUpdate: ptr(true)}})
	if err == nil || !strings.Contains(err.Error(), "below the current usage") {
		t.Errorf("Update below usage with checkBeforeUpdate: err = %v", err)
	}

	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	dirs := c.Dirs()
	if err := c.Destroy(); err != nil {
		t.Fatalf("Destroy: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s still exists after Destroy (stat: %v)", d, err)
		}
	}
	if Exists(c.Path()) {
		t.Errorf("Exists(%s) after Destroy", c.Path())
	}
	if err := c.Destroy(); err != nil {
		t.Errorf("second Destroy: %v", err)
	}
}

func procState(t *testing.T, pid int) string {
	t.Helper()
	for _, l := range strings.Split(read(t, fmt.Sprintf("/proc/%d/status", pid)), "\n") {
		if v, ok := strings.CutPrefix(l, "State:"); ok {
			return strings.Fields(v)[0]
		}
	}
	t.Fatalf("no State in /proc/%d/status", pid)
	return ""
}

func TestPidsLimitEnforced(t *testing.T) {
	c := testCgroup(t)
	if c.v1DirFor("pids") == "" && !c.layout.onV2("pids") {
		t.Skip("skipping: the pids controller is not mounted")
	}
	if err := c.Create(&specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](2)}}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	// The shell waits on a pipe until it is in the cgroup, then tries to keep 3 children alive.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `read x; ok=0; for i in 1 2 3; do sleep 1 & [ $? -eq 0 ] && ok=$((ok+1)); done; echo started=$ok; kill $(jobs -p) 2>/dev/null; wait`)
	cmd.Stdin = r
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := c.Enter(cmd.Process.Pid); err != nil {
		t.Fatalf("Enter: %v", err)
	}
	w.Write([]byte("go\n"))
	w.Close()
	_ = cmd.Wait()
	if !strings.Contains(out.String(), "fork") && !strings.Contains(out.String(), "Resource temporarily unavailable") {
		t.Errorf("forking 3 children under pids.max=2 did not fail; output:\n%s", out.String())
	}
	if strings.Contains(out.String(), "started=3") {
		t.Errorf("all 3 children started under pids.max=2:\n%s", out.String())
	}
}

func TestOOMEvents(t *testing.T) {
	c := testCgroup(t)
	if c.v1DirFor("memory") == "" && !c.layout.onV2("memory") {
		t.Skip("skipping: the memory controller is not mounted")
	}
	if err := c.Create(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](8 << 20), Swap: ptr[int64](8 << 20)}}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ch, err := c.OOMEvents(ctx)
	if err != nil {
		t.Fatalf("OOMEvents: %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	// busybox's sh builds a 64 MiB string in memory: well over the 8 MiB limit.
	cmd := exec.Command("sh", "-c", `read x; a=x; i=0; while [ $i -lt 26 ]; do a="$a$a"; i=$((i+1)); done; echo ${#a}`)
	cmd.Stdin = r
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	if err := c.Enter(cmd.Process.Pid); err != nil {
		t.Fatalf("Enter: %v", err)
	}
	w.Write([]byte("go\n"))
	w.Close()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatal("OOM channel closed before any event")
		}
	case <-ctx.Done():
		t.Fatal("no OOM event within 20s")
	}
	_ = cmd.Wait()
	cancel()
	for range ch {
	}
}

func TestV2DeviceFilter(t *testing.T) {
	needRoot(t)
	l, err := DetectLayout()
	if err != nil {
		t.Fatal(err)
	}
	if l.V2 == nil {
		t.Skip("skipping: no cgroup2 hierarchy mounted for the eBPF device filter")
	}
	// Force the eBPF path even where devices is a v1 controller: the filter works on any cgroup2 dir.
	l.V1 = nil
	path := fmt.Sprintf("/knast-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	c := newCgroup(path+"/c", l)
	t.Cleanup(func() {
		_ = c.Destroy()
		_ = newCgroup(path, l).Destroy()
	})
	if err := c.Create(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	// /dev/null is allowed by the defaults, /dev/full (1:7) too; deny it again to check a deny rule.
	for _, tc := range []struct {
		dev  string
		want bool
	}{{"/dev/null", true}, {"/dev/zero", true}, {"/dev/kmsg", false}} {
		if _, err := os.Stat(tc.dev); err != nil {
			continue
		}
		r, w, _ := os.Pipe()
		cmd := exec.Command("sh", "-c", "read x; exec head -c1 "+tc.dev+" >/dev/null 2>&1 || { echo denied; exit 1; }; true", "")
		cmd.Stdin = r
		// stdout must not be a device the filter denies: use a pipe.
		var out strings.Builder
		cmd.Stdout = &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		r.Close()
		if err := c.Enter(cmd.Process.Pid); err != nil {
			t.Fatalf("Enter: %v", err)
		}
		w.Write([]byte("go\n"))
		w.Close()
		err := cmd.Wait()
		if got := err == nil; got != tc.want {
			t.Errorf("open %s in the filtered cgroup: allowed=%v, want %v (%v, %q)", tc.dev, got, tc.want, err, out.String())
		}
	}
}

func TestCreateErrorsRollBack(t *testing.T) {
	c := testCgroup(t)
	tests := []struct {
		name string
		skip func() string
		r    *specs.LinuxResources
		want string
	}{
		{
			name: "blkio leaf weight is gone since Linux 5.0",
			skip: func() string {
				if d := c.v1DirFor("blkio"); d == "" {
					return "blkio is not a v1 controller here"
				} else if exists(filepath.Join(d, "blkio.leaf_weight")) {
					return "this kernel still has blkio.leaf_weight"
				}
				return ""
			},
			r:    &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{LeafWeight: ptr[uint16](100)}},
			want: "linux.resources.blockIO.leafWeight: " + filepath.Join(c.v1DirFor("blkio"), "blkio.leaf_weight") + ": no such file (removed with the CFQ scheduler in Linux 5.0)",
		},
		{
			name: "net_cls not mounted",
			skip: func() string {
				if c.v1DirFor("net_cls") != "" {
					return "net_cls is mounted here"
				}
				return ""
			},
			r:    &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: ptr[uint32](0x10001)}},
			want: "linux.resources.network.classID: the net_cls cgroup controller is not",
		},
		{
			name: "unified key for a v1 controller",
			skip: func() string {
				if c.v1DirFor("memory") == "" || c.v2 == "" {
					return "needs a hybrid host with memory on v1"
				}
				return ""
			},
			r:    &specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}},
			want: `linux.resources.unified["memory.high"]: the memory controller is mounted as cgroup v1`,
		},
		{
			name: "cpu shares out of range",
			skip: func() string {
				if c.v1DirFor("cpu") == "" {
					return "cpu is not a v1 controller here"
				}
				return ""
			},
			r:    &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](1 << 20)}},
			want: "linux.resources.cpu.shares: " + filepath.Join(c.v1DirFor("cpu"), "cpu.shares") + ": the kernel set 262144 instead of 1048576",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if why := tc.skip(); why != "" {
				t.Skip("skipping: " + why)
			}
			err := c.Create(tc.r)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Create error = %v, want it to contain %q", err, tc.want)
			}
			for _, d := range c.Dirs() {
				if _, err := os.Stat(d); !os.IsNotExist(err) {
					t.Errorf("%s left behind after a failed Create", d)
				}
			}
		})
	}
}

func TestHugetlbAndV2Dir(t *testing.T) {
	c := testCgroup(t)
	sizes := hugePageSizes()
	if len(sizes) == 0 {
		t.Skip("skipping: the kernel has no hugepage sizes")
	}
	f := ctrlFile(t, c, "hugetlb", "hugetlb."+sizes[0]+".limit_in_bytes", "hugetlb."+sizes[0]+".max")
	size, err := parsePageSize(sizes[0])
	if err != nil {
		t.Fatal(err)
	}
	limit := 4 * size
	if err := c.Create(&specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: sizes[0], Limit: limit}}}); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := read(t, f); got != strconv.FormatUint(limit, 10) {
		t.Errorf("%s = %s, want %d", f, got, limit)
	}
	st, err := c.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if _, ok := st.Hugetlb[sizes[0]]; !ok {
		t.Errorf("Stats hugetlb lacks %s: %v", sizes[0], st.Hugetlb)
	}
	fd, err := c.V2Dir()
	if err != nil {
		t.Fatalf("V2Dir: %v", err)
	}
	if c.v2 == "" {
		if fd != nil {
			t.Error("V2Dir returned a file without a cgroup2 side")
		}
		return
	}
	defer fd.Close()
	if target, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd.Fd())); err != nil || target != c.v2 {
		t.Errorf("V2Dir fd points at %q (%v), want %q", target, err, c.v2)
	}
}

func TestStatsCPU(t *testing.T) {
	c := testCgroup(t)
	if err := c.Create(nil); err != nil {
		t.Fatalf("Create: %v", err)
	}
	cmd, release := startWaiting(t, "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done")
	if err := c.Enter(cmd.Process.Pid); err != nil {
		t.Fatalf("Enter: %v", err)
	}
	release()
	_ = cmd.Wait()
	st, err := c.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.CPU.Usage.Total == 0 || st.CPU.Usage.Total > uint64(60*time.Second) {
		t.Errorf("cpu usage total = %d ns after a busy loop", st.CPU.Usage.Total)
	}
	if c.v1DirFor("cpuacct") != "" && len(st.CPU.Usage.Percpu) == 0 {
		t.Errorf("no per-cpu usage from cpuacct")
	}
}
