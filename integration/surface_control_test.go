//go:build linux

package integration

import (
	"encoding/json"
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

// counterScript bumps /tmp/counter every 20 ms, so a frozen container is one whose counter stands still.
const counterScript = `i=0; echo ready; while :; do i=$((i+1)); echo $i > /tmp/counter.new; mv /tmp/counter.new /tmp/counter; sleep 0.02; done`

func TestSurfacePauseResume(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(counterScript, e.withCgroup("ctr"))
	pid, _ := e.startReady("ctr", b)
	counter := rootfsPath(b, "tmp/counter")
	read := func() string { c, _ := os.ReadFile(counter); return string(c) }
	e.waitCond("the counter", func() bool { return read() != "" })
	freezer := e.cgroupDir(pid, "freezer")

	e.mustKnast("pause", "ctr")
	if st := e.state("ctr"); st.Status != "paused" || st.Pid != pid {
		t.Errorf("after pause: status %q pid %d, want paused %d", st.Status, st.Pid, pid)
	}
	if got := e.cgFile(freezer, "freezer.state"); got != "FROZEN" {
		t.Errorf("freezer.state %q, want FROZEN", got)
	}
	c1 := read()
	time.Sleep(300 * time.Millisecond)
	if c2 := read(); c1 != c2 {
		t.Errorf("counter moved while paused: %q -> %q", c1, c2)
	}
	if r := e.knast("exec", "ctr", "true"); r.Code == 0 {
		t.Errorf("exec into the paused container succeeded: %s", r)
	}

	e.mustKnast("resume", "ctr")
	if st := e.state("ctr"); st.Status != "running" {
		t.Errorf("after resume: status %q, want running", st.Status)
	}
	if got := e.cgFile(freezer, "freezer.state"); got != "THAWED" {
		t.Errorf("freezer.state %q, want THAWED", got)
	}
	e.waitCond("the counter to move after resume", func() bool { return read() != c1 })
	if r := e.knast("resume", "ctr"); r.Code == 0 {
		t.Errorf("resume of a running container succeeded: %s", r)
	}
	e.mustKnast("delete", "--force", "ctr")
}

func TestSurfacePausedKillDelete(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(e *surfaceEnv) error
	}{
		{name: "kill-all", stop: func(e *surfaceEnv) error {
			if r := e.knastIn(10*time.Second, "kill", "--all", "ctr", "KILL"); r.Code != 0 {
				return fmt.Errorf("%s", r)
			}
			if st := e.statusWithin(10*time.Second, "ctr", "stopped"); st != "stopped" {
				return fmt.Errorf("status %q 10s after kill --all KILL, want stopped", st)
			}
			if r := e.knastIn(10*time.Second, "delete", "ctr"); r.Code != 0 {
				return fmt.Errorf("%s", r)
			}
			return nil
		}},
		{name: "delete-force", stop: func(e *surfaceEnv) error {
			if r := e.knastIn(10*time.Second, "delete", "--force", "ctr"); r.Code != 0 {
				return fmt.Errorf("%s", r)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSurfaceEnv(t)
			b := e.bundle("sleep 1000 & echo ready; wait", e.withCgroup("ctr"))
			pid, _ := e.startReady("ctr", b)
			var kids []int
			e.waitCond("the child", func() bool { kids = childPids(pid); return len(kids) == 1 })
			freezer := e.cgroupDir(pid, "freezer")
			e.mustKnast("pause", "ctr")
			e.waitStatus("ctr", "paused")
			if err := tc.stop(e); err != nil {
				t.Errorf("stopping a paused container: %v", err)
				// Thaw by hand so that the leak check's kills land and the suite stays fast.
				os.WriteFile(filepath.Join(freezer, "freezer.state"), []byte("THAWED"), 0o644)
				syscall.Kill(pid, syscall.SIGKILL)
				e.knastIn(10*time.Second, "delete", "--force", "ctr")
			}
			e.waitPidGone(kids[0])
			e.waitPidGone(pid)
		})
	}
}

func TestSurfaceKillAllReachesChild(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(`trap 'echo init-got-TERM' TERM; `+
		`sh -c 'trap "echo child-got-TERM; exit 0" TERM; echo child-ready; while :; do sleep 0.05; done' & `+
		`echo ready; while :; do sleep 0.05; done`, e.withCgroup("ctr"))
	pid, out := e.startReady("ctr", b)
	e.waitFileContains(out, "child-ready\n")
	var kids []int
	e.waitCond("the child", func() bool { kids = childPids(pid); return len(kids) >= 1 })
	e.mustKnast("kill", "--all", "ctr", "TERM")
	got := e.waitFileContains(out, "child-got-TERM")
	e.waitFileContains(out, "init-got-TERM")
	e.waitPidGone(kids[0])
	if st := e.state("ctr"); st.Status != "running" {
		t.Errorf("the init trapped TERM, yet status is %q (output %q)", st.Status, got)
	}
	e.mustKnast("kill", "ctr", "KILL")
	e.waitStatus("ctr", "stopped")
	e.mustKnast("delete", "ctr")
}

func TestSurfacePs(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle("sleep 1000 & echo ready; wait", e.withCgroup("ctr"))
	pid, _ := e.startReady("ctr", b)
	var kids []int
	e.waitCond("the child", func() bool { kids = childPids(pid); return len(kids) == 1 })
	want := []int{pid, kids[0]}
	slices.Sort(want)

	r := e.mustKnast("ps", "--format", "json", "ctr")
	var pids []int
	if err := json.Unmarshal([]byte(r.Stdout), &pids); err != nil {
		t.Fatalf("ps json: %v: %q", err, r.Stdout)
	}
	slices.Sort(pids)
	if !slices.Equal(pids, want) {
		t.Errorf("ps json %v, want the init and its child %v", pids, want)
	}

	for _, args := range [][]string{nil, {"-o", "pid,comm"}} {
		r = e.mustKnast(append([]string{"ps", "ctr"}, args...)...)
		lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
		col := slices.Index(strings.Fields(lines[0]), "PID")
		if col < 0 || len(lines) != 3 {
			t.Errorf("ps %v table %q, want a PID header and two rows", args, r.Stdout)
			continue
		}
		var rows []int
		for _, l := range lines[1:] {
			f := strings.Fields(l)
			if len(f) > col {
				n, _ := strconv.Atoi(f[col])
				rows = append(rows, n)
			}
		}
		slices.Sort(rows)
		if !slices.Equal(rows, want) {
			t.Errorf("ps %v rows %v, want %v:\n%s", args, rows, want, r.Stdout)
		}
		if args != nil && !strings.Contains(r.Stdout, "sleep") {
			t.Errorf("ps -o pid,comm lacks the sleep command:\n%s", r.Stdout)
		}
	}
	e.mustKnast("delete", "--force", "ctr")
	if r := e.knast("ps", "ctr"); r.Code == 0 {
		t.Errorf("ps of a deleted container succeeded: %s", r)
	}
}

// surfaceEvent is one line of `events`: runc's types.Event with the stats fields the tests read.
type surfaceEvent struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data *struct {
		CPU struct {
			Usage struct {
				Total uint64 `json:"total"`
			} `json:"usage"`
		} `json:"cpu"`
		Memory struct {
			Usage struct {
				Usage uint64 `json:"usage"`
				Limit uint64 `json:"limit"`
			} `json:"usage"`
		} `json:"memory"`
		Pids struct {
			Current uint64 `json:"current"`
			Limit   uint64 `json:"limit"`
		} `json:"pids"`
	} `json:"data"`
}

// surfaceEvents parses the complete lines of an events output file.
func surfaceEvents(t *testing.T, name string) []surfaceEvent {
	t.Helper()
	b, _ := os.ReadFile(name)
	s := string(b)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	var out []surfaceEvent
	for _, l := range strings.Split(s, "\n") {
		var ev surfaceEvent
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Errorf("events line %q: %v", l, err)
			continue
		}
		out = append(out, ev)
	}
	return out
}

func countType(evs []surfaceEvent, typ string) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ {
			n++
		}
	}
	return n
}

func TestSurfaceEventsStats(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle("sleep 1000 & echo ready; wait", e.withCgroup("ctr"), func(s *specs.Spec) {
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr[int64](50)}
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr[int64](256 << 20)}
	})
	e.startReady("ctr", b)
	r := e.mustKnast("events", "--stats", "ctr")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 1 {
		t.Fatalf("events --stats printed %d lines, want 1: %q", len(lines), r.Stdout)
	}
	var ev surfaceEvent
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil {
		t.Fatalf("events --stats: %v: %q", err, r.Stdout)
	}
	if ev.Type != "stats" || ev.ID != "ctr" || ev.Data == nil {
		t.Fatalf("events --stats %q, want type stats, id ctr and data", r.Stdout)
	}
	if d := ev.Data; d.Pids.Current < 2 || d.Pids.Limit != 50 || d.Memory.Usage.Usage == 0 ||
		d.Memory.Usage.Limit != 256<<20 || d.CPU.Usage.Total == 0 {
		t.Errorf("stats %+v, want pids.current >= 2, pids.limit 50, memory usage > 0 with limit 256M, cpu usage > 0", *d)
	}
	e.mustKnast("delete", "--force", "ctr")
}

func TestSurfaceEventsStream(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"))
	e.startReady("ctr", b)
	out, wait, _ := e.bg("events", "--interval", "200ms", "ctr")
	start := time.Now()
	e.waitCond("two stats events", func() bool { return countType(surfaceEvents(t, out), "stats") >= 2 })
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("two stats events after %v, want the 200ms interval between them", d)
	}
	e.mustKnast("kill", "ctr", "KILL")
	e.waitStatus("ctr", "stopped")
	done := make(chan int, 1)
	go func() { code, _ := wait(); done <- code }()
	// runc's events ends once the container's cgroup is gone; a runtime may end it as soon as it stops.
	select {
	case code := <-done:
		t.Logf("events ended (exit %d) when the container stopped", code)
		done <- code
	case <-time.After(time.Second):
		t.Logf("events still running 1s after the container stopped")
	}
	e.mustKnast("delete", "ctr")
	select {
	case code := <-done:
		if code != 0 {
			t.Logf("events exited %d when the container went away", code)
		}
	case <-time.After(10 * time.Second):
		t.Errorf("events still running 10s after the container was deleted")
	}
	for _, ev := range surfaceEvents(t, out) {
		if ev.ID != "ctr" || (ev.Type != "stats" && ev.Type != "oom") {
			t.Errorf("unexpected event %+v", ev)
		}
	}
}

func TestSurfaceEventsOOM(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(`echo ready; while [ ! -e /tmp/go ]; do sleep 0.02; done; tail /dev/zero; echo tail-gone; exec sleep 1000`,
		e.withCgroup("ctr"), func(s *specs.Spec) {
			s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr[int64](16 << 20), Swap: ptr[int64](16 << 20)}
		})
	pid, stdout := e.startReady("ctr", b)
	out, _, stop := e.bg("events", "--interval", "100ms", "ctr")
	defer stop()
	// The first stats line shows events is up; OOM notification is armed before its stats loop runs.
	e.waitCond("a stats event", func() bool { return countType(surfaceEvents(t, out), "stats") >= 1 })
	if err := os.WriteFile(rootfsPath(b, "tmp/go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	e.waitFileContains(stdout, "tail-gone\n")
	e.waitCond("an oom event", func() bool { return countType(surfaceEvents(t, out), "oom") >= 1 })
	if ctl := e.cgFile(e.cgroupDir(pid, "memory"), "memory.oom_control"); !strings.Contains(ctl, "oom_kill ") ||
		strings.Contains(ctl, "oom_kill 0") {
		t.Errorf("memory.oom_control after an OOM kill:\n%s", ctl)
	}
	e.mustKnast("delete", "--force", "ctr")
}

func TestSurfaceUpdate(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"), func(s *specs.Spec) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: ptr[int64](128 << 20)}
		s.Linux.Resources.Pids = &specs.LinuxPids{Limit: ptr[int64](100)}
		s.Linux.Resources.CPU = &specs.LinuxCPU{Shares: ptr[uint64](1024)}
	})
	pid, _ := e.startReady("ctr", b)
	dirs := e.allCgroupDirs(pid)
	check := func(step string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			ctrl, file, _ := strings.Cut(k, ":")
			if got := e.cgFile(dirs[ctrl], file); got != v {
				t.Errorf("after %s: %s = %q, want %q", step, file, got, v)
			}
		}
	}
	check("create", map[string]string{"memory:memory.limit_in_bytes": "134217728", "pids:pids.max": "100", "cpu:cpu.shares": "1024"})

	e.mustKnast("update", "--memory", "64M", "ctr")
	check("--memory 64M", map[string]string{"memory:memory.limit_in_bytes": "67108864", "pids:pids.max": "100"})

	e.mustKnast("update", "--pids-limit", "7", "ctr")
	check("--pids-limit 7", map[string]string{"pids:pids.max": "7", "memory:memory.limit_in_bytes": "67108864"})

	e.mustKnast("update", "--cpu-share", "300", "--cpu-quota", "30000", "--cpu-period", "100000", "ctr")
	check("cpu flags", map[string]string{"cpu:cpu.shares": "300", "cpu:cpu.cfs_quota_us": "30000", "cpu:cpu.cfs_period_us": "100000"})

	in, err := os.CreateTemp(t.TempDir(), "resources-*.json")
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	in.WriteString(`{"cpu": {"shares": 256, "quota": 20000, "period": 50000}, "pids": {"limit": 42}, "memory": {"limit": 100663296}}`)
	in.Seek(0, 0)
	if r := e.knastWith(&opts{stdin: in}, "update", "--resources", "-", "ctr"); r.Code != 0 {
		t.Fatalf("%s", r)
	}
	check("--resources -", map[string]string{"cpu:cpu.shares": "256", "cpu:cpu.cfs_quota_us": "20000",
		"cpu:cpu.cfs_period_us": "50000", "pids:pids.max": "42", "memory:memory.limit_in_bytes": "100663296"})

	rf := filepath.Join(t.TempDir(), "resources.json")
	if err := os.WriteFile(rf, []byte(`{"memory": {"reservation": 16777216}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	e.mustKnast("update", "--resources", rf, "ctr")
	check("--resources FILE", map[string]string{"memory:memory.soft_limit_in_bytes": "16777216",
		"memory:memory.limit_in_bytes": "100663296", "pids:pids.max": "42"})

	if st := e.state("ctr"); st.Status != "running" || st.Pid != pid {
		t.Errorf("after updates: status %q pid %d, want running %d", st.Status, st.Pid, pid)
	}
	// Stats read the live limits back.
	r := e.mustKnast("events", "--stats", "ctr")
	var ev surfaceEvent
	if err := json.Unmarshal([]byte(strings.TrimSpace(r.Stdout)), &ev); err != nil || ev.Data == nil {
		t.Fatalf("events --stats: %v: %q", err, r.Stdout)
	}
	if ev.Data.Pids.Limit != 42 || ev.Data.Memory.Usage.Limit != 100663296 {
		t.Errorf("stats after update: pids.limit %d, memory limit %d; want 42 and 100663296",
			ev.Data.Pids.Limit, ev.Data.Memory.Usage.Limit)
	}
	e.mustKnast("kill", "ctr", "KILL")
	e.waitStatus("ctr", "stopped")
	r = e.knast("update", "--pids-limit", "9", "ctr")
	if r.Code == 0 || !(strings.Contains(r.Stderr, "not running") || strings.Contains(r.Stderr, "stopped")) {
		t.Errorf("update of a stopped container: %s; want a failure naming not running/stopped", r)
	}
	e.mustKnast("delete", "ctr")
}
