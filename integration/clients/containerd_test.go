//go:build linux

package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

const ctrImage = "localhost/busybox:latest"

// containerdEnv is one private containerd: config, root, state and sockets under a temp dir, its own
// namespace, and the runtime's --root (`ctr --runc-root`) there too.
type containerdEnv struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	sock     string
	ns       string
	runcRoot string
	logPath  string
}

// startContainerd starts containerd with a private config (no CRI plugin) and stops it, after
// removing every task and container, when t ends.
func startContainerd(t *testing.T) *containerdEnv {
	t.Helper()
	requireTools(t, "containerd", "ctr", "containerd-shim-runc-v2")
	// Not t.TempDir: the unix socket path must stay short, and the dir must outlive the cleanups.
	dir, err := os.MkdirTemp("", "knast-ctrd-")
	if err != nil {
		t.Fatal(err)
	}
	c := &containerdEnv{
		t:        t,
		ctx:      t.Context(),
		dir:      dir,
		sock:     filepath.Join(dir, "containerd.sock"),
		ns:       fmt.Sprintf("knast-test-%d", os.Getpid()),
		runcRoot: filepath.Join(dir, "runtime-root"),
		logPath:  filepath.Join(dir, "containerd.log"),
	}
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = %[5]q
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), c.sock, c.sock+".ttrpc",
		filepath.Join(dir, "debug.sock"), filepath.Join(dir, "opt"))
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	logF, err := os.Create(c.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Stdout, cmd.Stderr = logF, logF
	// Its own process group, so a Ctrl-C on the test does not reach it before the cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logF.Close()
		t.Fatalf("start containerd: %v", err)
	}
	logF.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { c.stop(cmd, exited) })

	msg := eventually(20*time.Second, func() string {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Sprintf("containerd exited: %v", err)
		default:
		}
		if r := c.ctr("version"); r.Code != 0 || r.Err != nil {
			return r.String()
		}
		return ""
	})
	if msg != "" {
		t.Fatalf("containerd did not come up: %s\n%s", msg, c.logTail())
	}
	c.importImage()
	return c
}

// stop removes what the tests left (tasks, containers: their shims exit with them), stops
// containerd, unmounts leftovers and removes the dir.
func (c *containerdEnv) stop(cmd *exec.Cmd, exited chan error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if r := run(ctx, nil, c.ctrArgs("containers", "ls", "-q")...); r.Code == 0 {
		for _, id := range strings.Fields(r.Stdout) {
			c.t.Logf("cleanup: removing container %s left by a test", id)
			run(ctx, nil, c.ctrArgs("task", "kill", "-s", "SIGKILL", id)...)
			run(ctx, nil, c.ctrArgs("task", "rm", "-f", id)...)
			run(ctx, nil, c.ctrArgs("containers", "rm", id)...)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
	mounts, _ := testutil.MountsUnder(c.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if err := os.RemoveAll(c.dir); err != nil {
		c.t.Errorf("cleanup: %v", err)
	}
}

func (c *containerdEnv) ctrArgs(args ...string) []string {
	return append([]string{"ctr", "--address", c.sock, "--namespace", c.ns}, args...)
}

// ctr runs `ctr --address S --namespace N args...`.
func (c *containerdEnv) ctr(args ...string) result {
	return run(c.ctx, nil, c.ctrArgs(args...)...)
}

// runArgs is `ctr run` with the runtime under test.
func (c *containerdEnv) runArgs(extra ...string) []string {
	return append([]string{"run", "--runc-binary", runtimeBin, "--runc-root", c.runcRoot}, extra...)
}

func (c *containerdEnv) importImage() {
	t := c.t
	rootfs := busyboxImage(t, c.dir)
	archive := filepath.Join(c.dir, "busybox-oci.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	err = testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{
		Name: ctrImage,
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:  []string{"/bin/sh"},
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if r := c.ctr("images", "import", archive); r.Code != 0 || r.Err != nil {
		t.Fatalf("import image: %s", r)
	}
	if r := c.ctr("images", "ls", "-q"); !strings.Contains(r.Stdout, ctrImage) {
		t.Fatalf("image %s missing after import: %s", ctrImage, r)
	}
}

// diag is what a failure report needs: the runtime's log.json files still in the shims' bundles and
// the end of containerd's log (which carries the shim's errors).
func (c *containerdEnv) diag() string {
	return readRuntimeLogs(filepath.Join(c.dir, "state"), "log.json") + c.logTail()
}

func (c *containerdEnv) logTail() string {
	data, _ := os.ReadFile(c.logPath)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	var keep []string
	for _, l := range lines {
		// Startup chatter and shim bookkeeping drown the errors.
		if strings.Contains(l, "level=debug") {
			continue
		}
		if strings.Contains(l, "level=error") || strings.Contains(l, "error=") || strings.Contains(l, "failed") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 30 {
		keep = keep[len(keep)-30:]
	}
	return "== containerd log (errors):\n" + strings.Join(keep, "\n")
}

// taskStatus returns the pid and status `ctr task ls` shows for id ("" when it has no task).
func (c *containerdEnv) taskStatus(id string) (int, string) {
	r := c.ctr("task", "ls")
	for _, line := range strings.Split(r.Stdout, "\n") {
		f := strings.Fields(line)
		if len(f) == 3 && f[0] == id {
			pid, _ := strconv.Atoi(f[1])
			return pid, f[2]
		}
	}
	return 0, ""
}

func (c *containerdEnv) waitStatus(id, want string) string {
	return eventually(10*time.Second, func() string {
		if _, st := c.taskStatus(id); st != want {
			return fmt.Sprintf("task %s status %q, want %q", id, st, want)
		}
		return ""
	})
}

// runtimeList lists the containers the runtime under test knows in containerd's namespace root.
func (c *containerdEnv) runtimeList() result {
	return run(c.ctx, nil, runtimeBin, "--root", filepath.Join(c.runcRoot, c.ns), "list", "-q")
}

func TestContainerd(t *testing.T) {
	testutil.RequireRoot(t)
	c := startContainerd(t)

	t.Run("run-output", func(t *testing.T) {
		r := c.ctr(c.runArgs("--rm", ctrImage, "out1", "echo", "hello from a container")...)
		if r.Code != 0 || r.Stdout != "hello from a container\n" {
			t.Errorf("want exit 0 and the echo; got %s\n%s", r, c.diag())
		}
	})

	t.Run("run-exit-status", func(t *testing.T) {
		for _, code := range []int{0, 1, 7, 130} {
			id := fmt.Sprintf("exit%d", code)
			r := c.ctr(c.runArgs("--rm", ctrImage, id, "sh", "-c", fmt.Sprintf("exit %d", code))...)
			if r.Code != code {
				t.Errorf("exit %d: got %s\n%s", code, r, c.diag())
			}
		}
	})

	t.Run("run-stdin-env-cwd", func(t *testing.T) {
		r := c.ctr(c.runArgs("--rm", "--env", "KNAST_V=v1", "--cwd", "/tmp", ctrImage, "envcwd",
			"sh", "-c", `echo "$KNAST_V $(pwd) $(id -u)"`)...)
		if r.Code != 0 || r.Stdout != "v1 /tmp 0\n" {
			t.Errorf("want %q; got %s\n%s", "v1 /tmp 0\n", r, c.diag())
		}
	})

	t.Run("run-tty", func(t *testing.T) {
		s := startPty(t, c.ctx, nil, c.ctrArgs(c.runArgs("--rm", "-t", ctrImage, "tty1",
			"sh", "-c", "test -t 0 && test -t 1 && echo stdio-is-a-tty; exit 3")...)...)
		res := s.wait()
		if res.Code != 3 || !strings.Contains(res.Output, "stdio-is-a-tty") {
			t.Errorf("ctr run -t: want exit 3 and a tty; got exit %d (err %v), output %q\n%s",
				res.Code, res.Err, res.Output, c.diag())
		}
	})

	t.Run("detached", func(t *testing.T) {
		testDetached(t, c)
	})

	t.Run("run-d-kill-remove", func(t *testing.T) {
		const id = "sleeper"
		if r := c.ctr(c.runArgs("-d", ctrImage, id, "sleep", "1000")...); r.Code != 0 {
			t.Fatalf("ctr run -d: %s\n%s", r, c.diag())
		}
		pid, st := c.taskStatus(id)
		if st != "RUNNING" || pid <= 0 {
			t.Fatalf("after run -d: pid %d status %q, want RUNNING\n%s", pid, st, c.diag())
		}
		if r := c.ctr("task", "kill", "-s", "SIGKILL", id); r.Code != 0 {
			t.Fatalf("task kill: %s\n%s", r, c.diag())
		}
		if msg := c.waitStatus(id, "STOPPED"); msg != "" {
			t.Fatalf("%s\n%s", msg, c.diag())
		}
		if r := c.ctr("task", "rm", id); r.Code != 0 || !strings.Contains(r.Stderr, "exit code 137") {
			t.Errorf("task rm: %s\n%s", r, c.diag())
		}
		if r := c.ctr("containers", "rm", id); r.Code != 0 {
			t.Errorf("containers rm: %s", r)
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("container init %d still exists after kill and rm (kill 0: %v)", pid, err)
		}
		if r := c.ctr("containers", "ls", "-q"); strings.Contains(r.Stdout, id) {
			t.Errorf("container %s still listed: %s", id, r)
		}
		if r := c.runtimeList(); r.Code != 0 || strings.Contains(r.Stdout, id) {
			t.Errorf("runtime still knows %s after rm: %s", id, r)
		}
	})
}

// counterScript counts in /tmp/counter every 50ms (pause shows as a frozen counter), keeps a child in
// the background (for ps), and exits 42 on SIGTERM.
const counterScript = `sleep 1000 & trap 'kill $!; exit 42' TERM
i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done`

// testDetached drives one long-running task through exec, ps, metrics, pause/resume and kill.
func testDetached(t *testing.T, c *containerdEnv) {
	const id = "worker"
	if r := c.ctr(c.runArgs("-d", ctrImage, id, "sh", "-c", counterScript)...); r.Code != 0 {
		t.Fatalf("ctr run -d: %s\n%s", r, c.diag())
	}
	pid, st := c.taskStatus(id)
	if st != "RUNNING" || pid <= 0 {
		t.Fatalf("after run -d: pid %d status %q, want RUNNING\n%s", pid, st, c.diag())
	}
	// The container is the runtime's under test, in the root the shim was told to use.
	if r := c.runtimeList(); r.Code != 0 || !strings.Contains(r.Stdout, id) {
		t.Fatalf("%s does not list %s: %s", runtimeBin, id, r)
	}
	counter := func() string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/counter", pid))
		return strings.TrimSpace(string(data))
	}
	if msg := eventually(5*time.Second, func() string {
		if counter() == "" {
			return "the task never wrote /tmp/counter"
		}
		return ""
	}); msg != "" {
		t.Fatal(msg)
	}

	t.Run("exec", func(t *testing.T) {
		r := c.ctr("task", "exec", "--exec-id", "e1", id, "sh", "-c", "echo exec-out; test -s /tmp/counter; exit 4")
		if r.Code != 4 || r.Stdout != "exec-out\n" {
			t.Errorf("task exec: want exit 4 and %q; got %s\n%s", "exec-out\n", r, c.diag())
		}
		r = c.ctr("task", "exec", "--exec-id", "e1b", "--cwd", "/tmp", "--user", "1000", id, "sh", "-c", "echo $(id -u) $(pwd)")
		if r.Code != 0 || r.Stdout != "1000 /tmp\n" {
			t.Errorf("task exec --user --cwd: want %q; got %s\n%s", "1000 /tmp\n", r, c.diag())
		}
	})

	t.Run("exec-tty", func(t *testing.T) {
		s := startPty(t, c.ctx, nil, c.ctrArgs("task", "exec", "-t", "--exec-id", "e2", id,
			"sh", "-c", "test -t 0 && echo exec-is-a-tty; exit 5")...)
		res := s.wait()
		if res.Code != 5 || !strings.Contains(res.Output, "exec-is-a-tty") {
			t.Errorf("task exec -t: want exit 5 and a tty; got exit %d (err %v), output %q\n%s",
				res.Code, res.Err, res.Output, c.diag())
		}
	})

	t.Run("exec-interactive-tty", func(t *testing.T) {
		s := startPty(t, c.ctx, nil, c.ctrArgs("task", "exec", "-t", "--exec-id", "e3", id, "sh")...)
		s.write("echo $((6*7))x\n")
		if !s.waitFor("42x", 10*time.Second) {
			t.Errorf("no answer through the exec pty; output %q\n%s", s.output(), c.diag())
		}
		s.write("exit 6\n")
		if res := s.wait(); res.Code != 6 {
			t.Errorf("interactive exec: want exit 6, got %d (err %v), output %q", res.Code, res.Err, res.Output)
		}
	})

	t.Run("ps", func(t *testing.T) {
		r := c.ctr("task", "ps", id)
		pids := map[int]bool{}
		for _, line := range strings.Split(r.Stdout, "\n")[1:] {
			if f := strings.Fields(line); len(f) > 0 {
				if p, err := strconv.Atoi(f[0]); err == nil {
					pids[p] = true
				}
			}
		}
		// The init and its `sleep 1000`; the loop's short sleeps come and go.
		if r.Code != 0 || !pids[pid] || len(pids) < 2 {
			t.Errorf("task ps: want the init %d and its background child; got %v from %s\n%s", pid, pids, r, c.diag())
		}
	})

	t.Run("metrics", func(t *testing.T) {
		r := c.ctr("task", "metrics", id)
		m := regexp.MustCompile(`(?m)^pids\.current\s+(\d+)`).FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			t.Fatalf("task metrics: want a pids.current row; got %s\n%s", r, c.diag())
		}
		// Counted in the container's own cgroup: a handful, not the host's hundreds.
		if n, _ := strconv.Atoi(m[1]); n < 2 || n > 10 {
			t.Errorf("pids.current = %d, want 2..10 (the container's cgroup)\n%s", n, r.Stdout)
		}
		cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		want := "/" + c.ns + "/" + id
		if err != nil || !strings.Contains(string(cg), want) {
			t.Errorf("init %d is not in cgroup %s (ctr's cgroupsPath): %q (%v)", pid, want, cg, err)
		}
	})

	t.Run("pause-resume", func(t *testing.T) {
		if r := c.ctr("task", "pause", id); r.Code != 0 {
			t.Fatalf("task pause: %s\n%s", r, c.diag())
		}
		if msg := c.waitStatus(id, "PAUSED"); msg != "" {
			t.Errorf("%s\n%s", msg, c.diag())
		}
		before := counter()
		time.Sleep(400 * time.Millisecond)
		if after := counter(); after != before {
			t.Errorf("paused task kept running: counter %s -> %s", before, after)
		}
		if r := c.ctr("task", "resume", id); r.Code != 0 {
			t.Fatalf("task resume: %s\n%s", r, c.diag())
		}
		if msg := c.waitStatus(id, "RUNNING"); msg != "" {
			t.Errorf("%s\n%s", msg, c.diag())
		}
		if msg := eventually(3*time.Second, func() string {
			if now := counter(); now == before {
				return "counter stuck at " + now + " after resume"
			}
			return ""
		}); msg != "" {
			t.Error(msg)
		}
	})

	t.Run("kill", func(t *testing.T) {
		if r := c.ctr("task", "kill", id); r.Code != 0 { // SIGTERM
			t.Fatalf("task kill: %s\n%s", r, c.diag())
		}
		if msg := c.waitStatus(id, "STOPPED"); msg != "" {
			t.Fatalf("%s\n%s", msg, c.diag())
		}
		// `ctr task rm` warns with the task's exit status.
		if r := c.ctr("task", "rm", id); r.Code != 0 || !strings.Contains(r.Stderr, "exit code 42") {
			t.Errorf("task rm: want the trap's exit 42; got %s\n%s", r, c.diag())
		}
		if r := c.ctr("containers", "rm", id); r.Code != 0 {
			t.Errorf("containers rm: %s", r)
		}
		if r := c.runtimeList(); r.Code != 0 || strings.Contains(r.Stdout, id) {
			t.Errorf("runtime still knows %s after rm: %s", id, r)
		}
	})
}
