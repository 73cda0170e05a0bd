//go:build linux

package linux

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	// The constructor must be in the test binary: it is the spawned child.
	_ "github.com/knast/knast/internal/container/linux/nsenter"
)

// spawnTestChildEnv switches the test binary into child mode: "view" reports
// what the child sees, "trivial" only says ok (for the benchmark).
const spawnTestChildEnv = "KNAST_SPAWN_TEST_CHILD"

func TestMain(m *testing.M) {
	if mode := os.Getenv(spawnTestChildEnv); mode != "" {
		os.Exit(spawnTestChild(mode))
	}
	os.Exit(m.Run())
}

// spawnTestView is what a spawned test child reports on the sync socket.
type spawnTestView struct {
	FDs       []int             // inherited (not close-on-exec) fds at start
	Pid       int               // getpid()
	UID, GID  int               // getuid(), getgid()
	NS        map[string]string // readlink /proc/self/ns/*
	UIDMap    string
	GIDMap    string
	Setgroups string
	Monotonic int64 // CLOCK_MONOTONIC, ns
	Boottime  int64 // CLOCK_BOOTTIME, ns
	Cgroup    string
	Env       []string // os.Environ()
	RawEnv    []string // names in /proc/self/environ starting with _KNAST_
	RawEnvErr string   // reading it (a non-dumpable process cannot)
	ExtraErr  string   // writing to fd 3
	Pdeathsig int      // prctl(PR_GET_PDEATHSIG)
}

// spawnTestChild is the body of the spawned test binary.
func spawnTestChild(mode string) int {
	// Scan with raw fcntl before opening anything. An fd inherited through
	// execve is necessarily not close-on-exec; the close-on-exec ones were
	// opened by this process's own runtime (Go keeps cgroup cpu files open).
	var v spawnTestView
	for fd := range 1024 {
		if fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			v.FDs = append(v.FDs, fd)
		}
	}
	sync, err := ChildSync()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		return 2
	}
	if mode == "trivial" {
		if _, err := sync.Write([]byte("ok\n")); err != nil {
			return 3
		}
		return 0
	}
	v.Pid, v.UID, v.GID = os.Getpid(), os.Getuid(), os.Getgid()
	var sig int32
	if err := unix.Prctl(unix.PR_GET_PDEATHSIG, uintptr(unsafe.Pointer(&sig)), 0, 0, 0); err != nil {
		v.Pdeathsig = -1
	} else {
		v.Pdeathsig = int(sig)
	}
	v.NS = spawnTestNamespaces("self")
	read := func(p string) string { b, _ := os.ReadFile(p); return string(b) }
	v.UIDMap, v.GIDMap = read("/proc/self/uid_map"), read("/proc/self/gid_map")
	v.Setgroups, v.Cgroup = read("/proc/self/setgroups"), read("/proc/self/cgroup")
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) == nil {
		v.Monotonic = ts.Nano()
	}
	if unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts) == nil {
		v.Boottime = ts.Nano()
	}
	v.Env = os.Environ()
	raw, err := os.ReadFile("/proc/self/environ")
	if err != nil {
		v.RawEnvErr = err.Error()
	}
	for e := range strings.SplitSeq(string(raw), "\x00") {
		if name, _, _ := strings.Cut(e, "="); strings.HasPrefix(name, "_KNAST_") {
			v.RawEnv = append(v.RawEnv, name)
		}
	}
	if slices.Contains(v.FDs, 3) {
		extra := os.NewFile(3, "extra")
		if _, err := extra.Write([]byte("extra")); err != nil {
			v.ExtraErr = err.Error()
		}
		extra.Close()
	}
	if err := json.NewEncoder(sync).Encode(v); err != nil {
		return 4
	}
	// Stay alive for the parent's checks until it closes its end.
	_, _ = io.Copy(io.Discard, sync)
	return 0
}

// spawnTestNamespaces returns readlink /proc/<pid>/ns/<type> for the types a
// process can be in.
func spawnTestNamespaces(pid string) map[string]string {
	ns := map[string]string{}
	for _, t := range []string{"cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts"} {
		if l, err := os.Readlink(filepath.Join("/proc", pid, "ns", t)); err == nil {
			ns[t] = l
		}
	}
	return ns
}

func spawnTestRequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces and writes id maps")
	}
}

// spawnTestChildren lists the pids of our direct children (all threads).
func spawnTestChildren(t testing.TB) []int {
	t.Helper()
	files, err := filepath.Glob("/proc/self/task/*/children")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // thread exited
		}
		for s := range strings.FieldsSeq(string(b)) {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids
}

// spawnTestHolder starts `sleep` in new namespaces to join. It maps 0 to
// 100000 in its user namespace.
func spawnTestHolder(t *testing.T) int {
	t.Helper()
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary for the namespace holder")
	}
	cmd := exec.Command(sleep, "3600")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWNET | syscall.CLONE_NEWPID |
			syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

// spawnTestCgroup2 creates a cgroup v2 directory for the test, or "" when
// there is no cgroup2 mount.
func spawnTestCgroup2(t *testing.T) (dir string, rel string) {
	t.Helper()
	dir, rel, _ = spawnTestCgroupDir(t, "cgroup2")
	return dir, rel
}

// spawnTestCgroupDir creates a directory for the test on the first mounted
// hierarchy of fstype ("cgroup" or "cgroup2") and returns it, its path below
// the mount, and the mount's root; "" when there is none.
func spawnTestCgroupDir(t *testing.T, fstype string) (dir, rel, mountRoot string) {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok || !strings.HasPrefix(post, fstype+" ") {
			continue
		}
		f := strings.Fields(pre)
		rel = fmt.Sprintf("/knast-spawn-test-%s-%d", fstype, os.Getpid())
		dir = filepath.Join(f[4], rel)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("create test cgroup: %v", err)
		}
		t.Cleanup(func() {
			if err := os.Remove(dir); err != nil {
				t.Errorf("remove test cgroup: %v", err)
			}
		})
		return dir, rel, f[3]
	}
	return "", "", ""
}

// spawnTestRun spawns cfg as a "view" child with one extra file, reads its
// view, checks what every spawned child must satisfy, and reaps it.
func spawnTestRun(t *testing.T, cfg SpawnConfig, parentCheck func(t *testing.T, p *Process)) spawnTestView {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cfg.Args = []string{"init"}
	cfg.Env = append(cfg.Env, spawnTestChildEnv+"=view", "KNAST_SPAWN_TEST_MARK=1",
		"_KNAST_JOIN=net=/injected/by/caller")
	cfg.Stderr = os.Stderr
	cfg.ExtraFiles = []*os.File{w}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p, err := Spawn(ctx, cfg)
	w.Close()
	if err != nil {
		t.Fatalf("Spawn: %v", err)
	}
	reaped := false
	defer func() {
		p.Sync.Close()
		if !reaped {
			_ = unix.Kill(p.Pid, unix.SIGKILL)
			_, _ = unix.Wait4(p.Pid, nil, 0, nil)
		}
	}()

	var v spawnTestView
	if err := json.NewDecoder(bufio.NewReader(p.Sync)).Decode(&v); err != nil {
		t.Fatalf("read child view: %v", err)
	}
	if extra, err := io.ReadAll(r); err != nil || string(extra) != "extra" || v.ExtraErr != "" {
		t.Errorf("extra file: read %q, %v; child error %q", extra, err, v.ExtraErr)
	}
	// fds: stdio, the extra file, the sync socket; not the memfd, nothing else.
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4}, v.FDs); diff != "" {
		t.Errorf("open fds in child (-want +got):\n%s", diff)
	}
	for _, e := range v.Env {
		if strings.HasPrefix(e, "_KNAST_") {
			t.Errorf("child environment has %s", e)
		}
	}
	if !slices.Contains(v.Env, "KNAST_SPAWN_TEST_MARK=1") {
		t.Errorf("child environment lacks the caller's variables: %q", v.Env)
	}
	// The raw block keeps only the number ChildSync consumed; the text of
	// the others (namespace paths) is wiped.
	if v.RawEnvErr != "" {
		// Non-dumpable after joining a user namespace: nobody in it can read it.
		t.Logf("child cannot read its /proc/self/environ: %s", v.RawEnvErr)
	} else if diff := cmp.Diff([]string{"_KNAST_SYNCFD"}, v.RawEnv); diff != "" {
		t.Errorf("_KNAST_ names in /proc/self/environ (-want +got):\n%s", diff)
	}
	// The final process outlives `knast create`: no parent-death signal.
	if v.Pdeathsig != 0 {
		t.Errorf("child parent-death signal %d, want none", v.Pdeathsig)
	}
	spawnTestCheckExe(t, p.Pid)
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p.Pid)); err != nil || string(comm) != "knast:[init]\n" {
		t.Errorf("child's name %q (%v), want knast:[init]", comm, err)
	}
	if parentCheck != nil {
		parentCheck(t, p)
	}

	p.Sync.Close()
	var ws unix.WaitStatus
	if _, err := unix.Wait4(p.Pid, &ws, 0, nil); err != nil {
		t.Fatalf("wait4 %d: %v", p.Pid, err)
	}
	reaped = true
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("child %d: wait status %#x", p.Pid, ws)
	}
	return v
}

// spawnTestCheckExe asserts the child runs from a sealed binary (a read-only
// overlay, or a sealed memfd where overlayfs is missing) that cannot be opened
// for writing through /proc/<pid>/exe (CVE-2019-5736).
func spawnTestCheckExe(t *testing.T, pid int) {
	t.Helper()
	exe := fmt.Sprintf("/proc/%d/exe", pid)
	target, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(exe, &fs); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(target, "/memfd:knast") && fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		t.Errorf("%s -> %q (fs type %#x), want a memfd or a read-only overlay", exe, target, fs.Type)
	}
	f, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err == nil {
		f.Close()
		t.Fatalf("%s opened for writing", exe)
	}
	if !errors.Is(err, unix.ETXTBSY) && !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) {
		t.Errorf("open %s for writing: %v, want ETXTBSY, EPERM or EROFS", exe, err)
	}
}

func TestSpawn(t *testing.T) {
	spawnTestRequireRoot(t)
	self := spawnTestNamespaces("self")
	holder := spawnTestHolder(t)
	hs := strconv.Itoa(holder)
	hns := spawnTestNamespaces(hs)
	join := func(types ...specs.LinuxNamespaceType) []specs.LinuxNamespace {
		var js []specs.LinuxNamespace
		for _, typ := range types {
			name := map[specs.LinuxNamespaceType]string{specs.NetworkNamespace: "net", specs.MountNamespace: "mnt"}[typ]
			if name == "" {
				name = string(typ)
			}
			js = append(js, specs.LinuxNamespace{Type: typ, Path: fmt.Sprintf("/proc/%d/ns/%s", holder, name)})
		}
		return js
	}
	// differ and same assert the child's namespaces against ours or the holder's.
	differ := func(t *testing.T, v spawnTestView, types ...string) {
		t.Helper()
		for _, typ := range types {
			if v.NS[typ] == "" || v.NS[typ] == self[typ] {
				t.Errorf("child %s namespace %q, want a new one (ours %q)", typ, v.NS[typ], self[typ])
			}
		}
	}
	same := func(t *testing.T, v spawnTestView, want map[string]string, types ...string) {
		t.Helper()
		for _, typ := range types {
			if v.NS[typ] != want[typ] {
				t.Errorf("child %s namespace %q, want %q", typ, v.NS[typ], want[typ])
			}
		}
	}
	fields := func(s string) [][]string {
		var out [][]string
		for l := range strings.Lines(s) {
			out = append(out, strings.Fields(l))
		}
		return out
	}

	cases := []struct {
		name   string
		needs  string // a /proc/self/ns entry the kernel must have
		cgroup bool   // clone into a fresh cgroup v2 directory
		cfg    SpawnConfig
		check  func(t *testing.T, v spawnTestView)
		parent func(t *testing.T, p *Process)
	}{
		{
			name: "no namespaces",
			check: func(t *testing.T, v spawnTestView) {
				same(t, v, self, "cgroup", "ipc", "mnt", "net", "pid", "user", "uts")
			},
			parent: func(t *testing.T, p *Process) {
				if children := spawnTestChildren(t); !slices.Contains(children, p.Pid) {
					t.Errorf("pid %d is not our child (children %v)", p.Pid, children)
				}
			},
		},
		{
			name: "new pid mnt uts ipc net",
			cfg: SpawnConfig{New: []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace,
				specs.UTSNamespace, specs.IPCNamespace, specs.NetworkNamespace}},
			check: func(t *testing.T, v spawnTestView) {
				differ(t, v, "pid", "mnt", "uts", "ipc", "net")
				same(t, v, self, "user", "cgroup")
				if v.Pid != 1 {
					t.Errorf("child getpid() = %d, want 1", v.Pid)
				}
			},
			parent: func(t *testing.T, p *Process) {
				st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
				if err != nil {
					t.Fatal(err)
				}
				want := fmt.Sprintf("NSpid:\t%d\t1\n", p.Pid)
				if !strings.Contains(string(st), want) {
					t.Errorf("/proc/%d/status lacks %q", p.Pid, want)
				}
			},
		},
		{
			name: "new user with mapping",
			cfg: SpawnConfig{
				New:         []specs.LinuxNamespaceType{specs.UserNamespace},
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
				GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 300000, Size: 1000}, {ContainerID: 1000, HostID: 400000, Size: 1}},
			},
			check: func(t *testing.T, v spawnTestView) {
				differ(t, v, "user")
				if diff := cmp.Diff([][]string{{"0", "200000", "65536"}}, fields(v.UIDMap)); diff != "" {
					t.Errorf("uid_map (-want +got):\n%s", diff)
				}
				if diff := cmp.Diff([][]string{{"0", "300000", "1000"}, {"1000", "400000", "1"}}, fields(v.GIDMap)); diff != "" {
					t.Errorf("gid_map (-want +got):\n%s", diff)
				}
				if v.UID != 0 || v.GID != 0 || strings.TrimSpace(v.Setgroups) != "allow" {
					t.Errorf("child uid %d gid %d setgroups %q, want 0 0 allow", v.UID, v.GID, v.Setgroups)
				}
			},
			parent: func(t *testing.T, p *Process) {
				st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
				if err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(string(st), "Uid:\t200000\t200000\t200000\t200000\n") {
					t.Errorf("host view of the child's uids is not 200000:\n%s", st)
				}
			},
		},
		{
			name: "new user pid mnt with setgroups deny",
			cfg: SpawnConfig{
				New:           []specs.LinuxNamespaceType{specs.UserNamespace, specs.PIDNamespace, specs.MountNamespace},
				UIDMappings:   []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
				GIDMappings:   []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}},
				SetgroupsDeny: true,
			},
			check: func(t *testing.T, v spawnTestView) {
				differ(t, v, "user", "pid", "mnt")
				if v.Pid != 1 || v.UID != 0 || strings.TrimSpace(v.Setgroups) != "deny" {
					t.Errorf("child pid %d uid %d setgroups %q, want 1 0 deny", v.Pid, v.UID, v.Setgroups)
				}
			},
		},
		{
			name: "join net",
			cfg:  SpawnConfig{Join: join(specs.NetworkNamespace)},
			check: func(t *testing.T, v spawnTestView) {
				same(t, v, hns, "net")
				same(t, v, self, "pid", "mnt", "user")
			},
		},
		{
			name: "join pid",
			cfg:  SpawnConfig{Join: join(specs.PIDNamespace)},
			check: func(t *testing.T, v spawnTestView) {
				same(t, v, hns, "pid")
				if v.Pid <= 1 {
					t.Errorf("child getpid() = %d, want > 1 (the holder is 1)", v.Pid)
				}
			},
			parent: func(t *testing.T, p *Process) {
				if got := spawnTestNamespaces(strconv.Itoa(p.Pid))["pid"]; got != hns["pid"] {
					t.Errorf("host pid %d is in pid namespace %q, want %q", p.Pid, got, hns["pid"])
				}
			},
		},
		{
			name: "join user mnt pid net uts ipc",
			cfg: SpawnConfig{Join: join(specs.MountNamespace, specs.NetworkNamespace, specs.UserNamespace,
				specs.PIDNamespace, specs.UTSNamespace, specs.IPCNamespace)},
			check: func(t *testing.T, v spawnTestView) {
				same(t, v, hns, "user", "mnt", "pid", "net", "uts", "ipc")
				if v.UID != 0 || v.GID != 0 {
					t.Errorf("child uid %d gid %d, want root of the joined user namespace", v.UID, v.GID)
				}
				if diff := cmp.Diff([][]string{{"0", "100000", "65536"}}, fields(v.UIDMap)); diff != "" {
					t.Errorf("uid_map (-want +got):\n%s", diff)
				}
			},
		},
		{
			name: "join net create pid mnt",
			cfg: SpawnConfig{
				Join: join(specs.NetworkNamespace),
				New:  []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace},
			},
			check: func(t *testing.T, v spawnTestView) {
				same(t, v, hns, "net")
				differ(t, v, "pid", "mnt")
				if v.Pid != 1 {
					t.Errorf("child getpid() = %d, want 1", v.Pid)
				}
			},
		},
		{
			name:  "new time with offsets",
			needs: "time",
			cfg: SpawnConfig{
				New: []specs.LinuxNamespaceType{specs.TimeNamespace},
				TimeOffsets: map[string]specs.LinuxTimeOffset{
					"monotonic": {Secs: 1000},
					"boottime":  {Secs: 500, Nanosecs: 7},
				},
			},
			check: func(t *testing.T, v spawnTestView) { differ(t, v, "time") },
		},
		{
			name:   "new cgroup ns in a cgroup",
			needs:  "cgroup",
			cgroup: true,
			cfg:    SpawnConfig{New: []specs.LinuxNamespaceType{specs.CgroupNamespace}},
			check: func(t *testing.T, v spawnTestView) {
				differ(t, v, "cgroup")
				if !strings.Contains(v.Cgroup, "0::/\n") {
					t.Errorf("child /proc/self/cgroup %q, want the namespace root 0::/", v.Cgroup)
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.needs != "" && self[tc.needs] == "" {
				t.Skipf("kernel has no %s namespaces (/proc/self/ns/%s missing)", tc.needs, tc.needs)
			}
			before := spawnTestChildren(t)
			cfg := tc.cfg
			parent := tc.parent
			if tc.cgroup {
				dir, rel := spawnTestCgroup2(t)
				if dir == "" {
					t.Skip("no cgroup2 mount for CLONE_INTO_CGROUP")
				}
				f, err := os.Open(dir)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				cfg.Cgroup = f
				parent = func(t *testing.T, p *Process) {
					b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", p.Pid))
					if err != nil {
						t.Fatal(err)
					}
					if !strings.Contains(string(b), "0::"+rel+"\n") {
						t.Errorf("host view of the child's cgroup %q, want 0::%s", b, rel)
					}
				}
			}
			var m0, m1, b0, b1 unix.Timespec
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m0)
			_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &b0)
			v := spawnTestRun(t, cfg, parent)
			_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &m1)
			_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &b1)
			tc.check(t, v)
			// The child's clocks read between our two readings plus the offset.
			for _, c := range []struct {
				clock  string
				got    int64
				t0, t1 unix.Timespec
			}{{"monotonic", v.Monotonic, m0, m1}, {"boottime", v.Boottime, b0, b1}} {
				off, ok := cfg.TimeOffsets[c.clock]
				if !ok {
					continue
				}
				d := off.Secs*1e9 + int64(off.Nanosecs)
				if lo, hi := c.t0.Nano()+d, c.t1.Nano()+d; c.got < lo || c.got > hi {
					t.Errorf("child %s clock %d, want within [%d, %d] (offset %dns)", c.clock, c.got, lo, hi, d)
				}
			}
			if after := spawnTestChildren(t); !slices.Equal(before, after) {
				t.Errorf("children before %v, after %v: Spawn leaked a process", before, after)
			}
		})
	}
}

func TestSpawnErrors(t *testing.T) {
	spawnTestRequireRoot(t)
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := unix.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	userOnly := []specs.LinuxNamespaceType{specs.UserNamespace}
	cases := []struct {
		name    string
		cfg     SpawnConfig
		timeout time.Duration
		want    []string // substrings of the error
		is      error
	}{
		{
			name: "missing join path",
			cfg:  SpawnConfig{Join: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/nonexistent/knast-netns"}}},
			want: []string{"open net namespace /nonexistent/knast-netns", "no such file or directory"},
		},
		{
			name: "join path of the wrong type",
			cfg:  SpawnConfig{Join: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/uts"}}},
			want: []string{"setns net /proc/self/ns/uts", "invalid argument"},
		},
		{
			name: "unknown type",
			cfg:  SpawnConfig{New: []specs.LinuxNamespaceType{"bogus"}},
			want: []string{`namespace type "bogus": unknown`},
		},
		{
			name: "relative cgroup directory",
			cfg:  SpawnConfig{CgroupV1: []string{"sys/fs/cgroup/pids/x"}},
			want: []string{`cgroup directory "sys/fs/cgroup/pids/x": want an absolute path`},
		},
		{
			name: "missing cgroup directory",
			cfg:  SpawnConfig{CgroupV1: []string{"/nonexistent/knast-cgroup"}},
			want: []string{"join cgroup: open /nonexistent/knast-cgroup/tasks", "no such file or directory"},
		},
		{
			name: "gate refuses",
			cfg:  SpawnConfig{Gate: func() error { return errors.New("cgroup limits failed") }},
			want: []string{"cgroup limits failed"},
		},
		{
			name: "joined and created",
			cfg: SpawnConfig{
				Join: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: "/proc/self/ns/net"}},
				New:  []specs.LinuxNamespaceType{specs.NetworkNamespace},
			},
			want: []string{"namespace network: both joined and created"},
		},
		{
			name: "user without mappings",
			cfg:  SpawnConfig{New: userOnly},
			want: []string{"uid and gid mappings are required"},
		},
		{
			name: "offsets without time namespace",
			cfg:  SpawnConfig{TimeOffsets: map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}}},
			want: []string{"time offsets need a new time namespace"},
		},
		{
			name: "unknown clock",
			cfg: SpawnConfig{New: []specs.LinuxNamespaceType{specs.TimeNamespace},
				TimeOffsets: map[string]specs.LinuxTimeOffset{"realtime": {Secs: 1}}},
			want: []string{`time offset "realtime": unknown clock`},
		},
		{
			name: "mapping the kernel rejects",
			cfg: SpawnConfig{New: userOnly,
				UIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 0}},
				GIDMappings: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0, Size: 1}}},
			want: []string{"uid_map", "invalid argument"},
		},
		{
			// Opening a FIFO blocks in the C phase until the context ends.
			name:    "context ends during the C phase",
			cfg:     SpawnConfig{Join: []specs.LinuxNamespace{{Type: specs.NetworkNamespace, Path: fifo}}},
			timeout: 300 * time.Millisecond,
			is:      context.DeadlineExceeded,
		},
		{
			name:    "context already done",
			cfg:     SpawnConfig{},
			timeout: -1,
			is:      context.DeadlineExceeded,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := spawnTestChildren(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			if tc.timeout != 0 {
				cancel()
				ctx, cancel = context.WithTimeout(context.Background(), tc.timeout)
			}
			defer cancel()
			cfg := tc.cfg
			cfg.Args = []string{"init"}
			cfg.Env = []string{spawnTestChildEnv + "=view"}
			start := time.Now()
			p, err := Spawn(ctx, cfg)
			if err == nil {
				p.Sync.Close()
				_ = unix.Kill(p.Pid, unix.SIGKILL)
				_, _ = unix.Wait4(p.Pid, nil, 0, nil)
				t.Fatal("Spawn succeeded, want an error")
			}
			for _, w := range tc.want {
				if !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(w)) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q is not %v", err, tc.is)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("Spawn took %v to fail", d)
			}
			if after := spawnTestChildren(t); !slices.Equal(before, after) {
				t.Errorf("children before %v, after %v: Spawn leaked a process", before, after)
			}
		})
	}
}

func TestChildSyncOutsideSpawn(t *testing.T) {
	t.Setenv(spawnEnvSyncFD, "") // restored after the test
	os.Unsetenv(spawnEnvSyncFD)
	if _, err := ChildSync(); err == nil || !strings.Contains(err.Error(), "not started by Spawn") {
		t.Errorf("ChildSync without $%s: %v", spawnEnvSyncFD, err)
	}
	t.Setenv(spawnEnvSyncFD, "0")
	if _, err := ChildSync(); err == nil || !strings.Contains(err.Error(), "bad $_KNAST_SYNCFD") {
		t.Errorf("ChildSync with fd 0: %v", err)
	}
	f, err := os.CreateTemp(t.TempDir(), "notasocket")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	t.Setenv(spawnEnvSyncFD, strconv.Itoa(int(f.Fd())))
	if _, err := ChildSync(); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("ChildSync with a regular file: %v", err)
	}
}

func BenchmarkSpawn(b *testing.B) {
	spawnTestRequireRoot(b)
	for _, bc := range []struct {
		name string
		new  []specs.LinuxNamespaceType
	}{
		{"plain", nil},
		{"pid+mnt+net+ipc+uts", []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace,
			specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			cfg := SpawnConfig{Args: []string{"init"}, Env: []string{spawnTestChildEnv + "=trivial"}, New: bc.new}
			buf := make([]byte, 3)
			for b.Loop() {
				p, err := Spawn(context.Background(), cfg)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(p.Sync, buf); err != nil || string(buf) != "ok\n" {
					b.Fatalf("child said %q, %v", buf, err)
				}
				p.Sync.Close()
				var ws unix.WaitStatus
				if _, err := unix.Wait4(p.Pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
					b.Fatalf("wait4: %v, status %#x", err, ws)
				}
			}
		})
	}
}

// spawnTestCgroup1 creates a directory on a cgroup v1 hierarchy for the test, or skips when the host
// mounts none (a cgroup2-only host: the v1 join has nothing to do there). line is how the directory
// ends a line of /proc/<pid>/cgroup.
func spawnTestCgroup1(t *testing.T) (dir, line string) {
	t.Helper()
	dir, rel, root := spawnTestCgroupDir(t, "cgroup")
	if dir == "" {
		t.Skip("no cgroup v1 hierarchy is mounted on this host")
	}
	return dir, ":" + filepath.Join(root, rel) + "\n"
}

// The child joins the v1 cgroups itself, only after the gate opens, and before its Go code runs.
func TestSpawnCgroupV1Gate(t *testing.T) {
	spawnTestRequireRoot(t)
	dir, want := spawnTestCgroup1(t)
	gated := false
	cfg := SpawnConfig{
		New:      []specs.LinuxNamespaceType{specs.PIDNamespace},
		CgroupV1: []string{dir},
		Gate: func() error {
			// Give the child time to reach the gate; it must not have joined yet.
			time.Sleep(100 * time.Millisecond)
			b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			if err != nil {
				return err
			}
			if strings.TrimSpace(string(b)) != "" {
				t.Errorf("cgroup has processes %q before the gate opened", b)
			}
			gated = true
			return nil
		},
	}
	v := spawnTestRun(t, cfg, func(t *testing.T, p *Process) {
		b, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(string(b)), strconv.Itoa(p.Pid)) {
			t.Errorf("%s/cgroup.procs = %q, want the child %d", dir, b, p.Pid)
		}
	})
	if !gated {
		t.Error("the gate was never called")
	}
	if !strings.Contains(v.Cgroup, want) {
		t.Errorf("child /proc/self/cgroup %q, want a line ending in %q", v.Cgroup, want)
	}
}
