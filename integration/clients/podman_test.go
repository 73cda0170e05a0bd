//go:build linux

package clients

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

const podmanImage = "localhost/busybox:latest"

// podmanEnv is a private podman: storage, run root, tmp dir, containers.conf and the runtime's
// --root under one temp dir; cgroupfs, file events, no network.
type podmanEnv struct {
	t      *testing.T
	ctx    context.Context
	dir    string
	rtRoot string
	rtLog  string
	// rtWrapper runs the runtime under test with --root and --log in dir: podman's `--runtime-flag`
	// is not passed on to the `podman container cleanup` that conmon runs when a container exits,
	// so that cleanup would look for the container in the runtime's default root.
	rtWrapper string
	env       []string
}

func newPodman(t *testing.T) *podmanEnv {
	t.Helper()
	requireTools(t, "podman", "conmon")
	dir, err := os.MkdirTemp("", "knast-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podmanEnv{
		t:      t,
		ctx:    t.Context(),
		dir:    dir,
		rtRoot: filepath.Join(dir, "runtime-root"),
		rtLog:  filepath.Join(dir, "runtime.log"),
	}
	t.Cleanup(p.cleanup)
	// Named like the runtime, since podman decides some behaviour by the runtime's name.
	p.rtWrapper = filepath.Join(dir, "bin", filepath.Base(runtimeBin))
	wrapper := fmt.Sprintf("#!/bin/sh\nexec %s --root %s --log %s \"$@\"\n",
		shellQuote(runtimeBin), shellQuote(p.rtRoot), shellQuote(p.rtLog))
	if err := os.MkdirAll(filepath.Dir(p.rtWrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.rtWrapper, []byte(wrapper), 0o755); err != nil {
		t.Fatal(err)
	}
	// Podman asks for nofile=1048576 and nproc limits above ours by default; without CAP_SYS_RESOURCE
	// in the bounding set (CI hosts) any runtime fails setrlimit. Lower limits can always be set.
	conf := `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
netns = "none"

[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
`
	confPath := filepath.Join(dir, "containers.conf")
	storPath := filepath.Join(dir, "storage.conf")
	stor := fmt.Sprintf("[storage]\ndriver = \"vfs\"\nrunroot = %q\ngraphroot = %q\n",
		filepath.Join(dir, "runroot"), filepath.Join(dir, "root"))
	for path, data := range map[string]string{confPath: conf, storPath: stor} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p.env = []string{"CONTAINERS_CONF=" + confPath, "CONTAINERS_STORAGE_CONF=" + storPath}

	rootfs := busyboxImage(t, dir)
	tarPath := filepath.Join(dir, "rootfs.tar")
	f, err := os.Create(tarPath)
	if err != nil {
		t.Fatal(err)
	}
	err = testutil.WriteLayer(f, rootfs)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	if r := p.podman("import", "--change", "CMD=/bin/sh", tarPath, podmanImage); r.Code != 0 {
		t.Fatalf("podman import: %s", r)
	}
	return p
}

func (p *podmanEnv) args(args ...string) []string {
	return append([]string{"podman",
		"--root", filepath.Join(p.dir, "root"),
		"--runroot", filepath.Join(p.dir, "runroot"),
		"--tmpdir", filepath.Join(p.dir, "tmp"),
		"--storage-driver", "vfs",
		"--cgroup-manager", "cgroupfs",
		"--events-backend", "file",
		"--runtime", p.rtWrapper,
	}, args...)
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func (p *podmanEnv) podman(args ...string) result {
	return run(p.ctx, p.env, p.args(args...)...)
}

// diag is the runtime's --log for a failure report.
func (p *podmanEnv) diag() string {
	data, _ := os.ReadFile(p.rtLog)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return "== runtime --log " + p.rtLog + ":\n" + strings.Join(lines, "\n")
}

func (p *podmanEnv) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if r := run(ctx, p.env, p.args("ps", "-aq")...); r.Code == 0 && strings.TrimSpace(r.Stdout) != "" {
		p.t.Logf("cleanup: removing containers left by a test: %s", strings.Fields(r.Stdout))
		run(ctx, p.env, p.args("rm", "-af", "-t", "0")...)
	}
	mounts, _ := testutil.MountsUnder(p.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if err := os.RemoveAll(p.dir); err != nil {
		p.t.Errorf("cleanup: %v", err)
	}
}

func (p *podmanEnv) inspect(name, format string) string {
	r := p.podman("inspect", "--type", "container", "--format", format, name)
	return strings.TrimSpace(r.Stdout)
}

// runtimeList lists the containers the runtime under test keeps in podman's runtime root.
func (p *podmanEnv) runtimeList() result {
	return run(p.ctx, nil, runtimeBin, "--root", p.rtRoot, "list", "-q")
}

func TestPodman(t *testing.T) {
	testutil.RequireRoot(t)
	p := newPodman(t)

	t.Run("run-output", func(t *testing.T) {
		r := p.podman("run", "--rm", "--network", "none", podmanImage, "echo", "hello from podman")
		if r.Code != 0 || r.Stdout != "hello from podman\n" {
			t.Errorf("want exit 0 and the echo; got %s\n%s", r, p.diag())
		}
	})

	t.Run("run-exit-status", func(t *testing.T) {
		for _, code := range []int{0, 1, 7, 99} {
			r := p.podman("run", "--rm", "--network", "none", podmanImage, "sh", "-c", fmt.Sprintf("exit %d", code))
			if r.Code != code {
				t.Errorf("exit %d: got %s\n%s", code, r, p.diag())
			}
		}
	})

	t.Run("run-user-env-workdir", func(t *testing.T) {
		r := p.podman("run", "--rm", "--network", "none", "--user", "1000", "--env", "KNAST_V=v1",
			"--workdir", "/tmp", podmanImage, "sh", "-c", `echo "$KNAST_V $(pwd) $(id -u) $(hostname)"`)
		if r.Code != 0 || !strings.HasPrefix(r.Stdout, "v1 /tmp 1000 ") {
			t.Errorf("want %q...; got %s\n%s", "v1 /tmp 1000 ", r, p.diag())
		}
	})

	t.Run("run-it", func(t *testing.T) {
		s := startPty(t, p.ctx, p.env, p.args("run", "-it", "--rm", "--network", "none", podmanImage, "sh")...)
		s.write("test -t 0 && echo stdin-is-a-tty; echo $((6*7))x\n")
		if !s.waitFor("42x", 20*time.Second) || !strings.Contains(s.output(), "stdin-is-a-tty") {
			t.Errorf("no answer through the pty; output %q\n%s", s.output(), p.diag())
		}
		s.write("exit 3\n")
		if res := s.wait(); res.Code != 3 {
			t.Errorf("podman run -it: want exit 3, got %d (err %v), output %q\n%s", res.Code, res.Err, res.Output, p.diag())
		}
	})

	t.Run("detached", func(t *testing.T) {
		testPodmanDetached(t, p)
	})

	t.Run("kill", func(t *testing.T) {
		const name = "victim"
		if r := p.podman("run", "-d", "--name", name, "--network", "none", podmanImage, "sleep", "1000"); r.Code != 0 {
			t.Fatalf("podman run -d: %s\n%s", r, p.diag())
		}
		pid, _ := strconv.Atoi(p.inspect(name, "{{.State.Pid}}"))
		if r := p.podman("kill", name); r.Code != 0 { // SIGKILL
			t.Fatalf("podman kill: %s\n%s", r, p.diag())
		}
		if r := p.podman("wait", name); r.Code != 0 || strings.TrimSpace(r.Stdout) != "137" {
			t.Errorf("podman wait: want 137; got %s\n%s", r, p.diag())
		}
		if r := p.podman("rm", name); r.Code != 0 {
			t.Errorf("podman rm: %s\n%s", r, p.diag())
		}
		if pid > 0 {
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("container init %d still exists (kill 0: %v)", pid, err)
			}
		}
	})

	t.Run("nothing-left", func(t *testing.T) {
		if r := p.podman("ps", "-aq"); r.Code != 0 || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("podman ps -a after the tests: %s", r)
		}
		if r := p.runtimeList(); r.Code != 0 || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("runtime list after the tests: %s", r)
		}
	})
}

// testPodmanDetached drives one container through logs, exec, pause/unpause, stop and rm.
func testPodmanDetached(t *testing.T, p *podmanEnv) {
	const name = "worker"
	script := `echo started; trap 'echo stopping; exit 0' TERM
i=0; while true; do i=$((i+1)); echo $i > /tmp/counter; sleep 0.05; done`
	r := p.podman("run", "-d", "--name", name, "--network", "none", podmanImage, "sh", "-c", script)
	if r.Code != 0 {
		t.Fatalf("podman run -d: %s\n%s", r, p.diag())
	}
	pid, _ := strconv.Atoi(p.inspect(name, "{{.State.Pid}}"))
	if pid <= 0 {
		t.Fatalf("no pid for %s: %s", name, p.diag())
	}
	// The container is the runtime's under test, in the root the wrapper gives it.
	if id := p.inspect(name, "{{.Id}}"); id == "" || !strings.Contains(p.runtimeList().Stdout, id) {
		t.Fatalf("%s does not list container %s (%q): %s", runtimeBin, name, id, p.runtimeList())
	}
	counter := func() string {
		data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/counter", pid))
		return strings.TrimSpace(string(data))
	}

	t.Run("logs", func(t *testing.T) {
		if msg := eventually(10*time.Second, func() string {
			if r := p.podman("logs", name); r.Stdout != "started\n" {
				return r.String()
			}
			return ""
		}); msg != "" {
			t.Errorf("podman logs: want %q; got %s\n%s", "started\n", msg, p.diag())
		}
	})

	t.Run("exec", func(t *testing.T) {
		r := p.podman("exec", name, "sh", "-c", "echo in-exec; test -s /tmp/counter; exit 3")
		if r.Code != 3 || r.Stdout != "in-exec\n" {
			t.Errorf("podman exec: want exit 3 and %q; got %s\n%s", "in-exec\n", r, p.diag())
		}
		r = p.podman("exec", "--user", "1000", "--workdir", "/tmp", name, "sh", "-c", "echo $(id -u) $(pwd)")
		if r.Code != 0 || r.Stdout != "1000 /tmp\n" {
			t.Errorf("podman exec --user --workdir: want %q; got %s\n%s", "1000 /tmp\n", r, p.diag())
		}
	})

	t.Run("exec-it", func(t *testing.T) {
		s := startPty(t, p.ctx, p.env, p.args("exec", "-it", name, "sh")...)
		s.write("test -t 0 && echo exec-is-a-tty; echo $((7*6))y\n")
		if !s.waitFor("42y", 20*time.Second) || !strings.Contains(s.output(), "exec-is-a-tty") {
			t.Errorf("no answer through the exec pty; output %q\n%s", s.output(), p.diag())
		}
		s.write("exit 4\n")
		if res := s.wait(); res.Code != 4 {
			t.Errorf("podman exec -it: want exit 4, got %d (err %v), output %q\n%s", res.Code, res.Err, res.Output, p.diag())
		}
	})

	t.Run("pause-unpause", func(t *testing.T) {
		if r := p.podman("pause", name); r.Code != 0 {
			t.Fatalf("podman pause: %s\n%s", r, p.diag())
		}
		if st := p.inspect(name, "{{.State.Status}}"); st != "paused" {
			t.Errorf("after pause: status %q, want paused", st)
		}
		before := counter()
		time.Sleep(400 * time.Millisecond)
		if after := counter(); after != before {
			t.Errorf("paused container kept running: counter %s -> %s", before, after)
		}
		if r := p.podman("unpause", name); r.Code != 0 {
			t.Fatalf("podman unpause: %s\n%s", r, p.diag())
		}
		if st := p.inspect(name, "{{.State.Status}}"); st != "running" {
			t.Errorf("after unpause: status %q, want running", st)
		}
		if msg := eventually(3*time.Second, func() string {
			if now := counter(); now == before {
				return "counter stuck at " + now + " after unpause"
			}
			return ""
		}); msg != "" {
			t.Error(msg)
		}
	})

	t.Run("stop-rm", func(t *testing.T) {
		start := time.Now()
		if r := p.podman("stop", "-t", "20", name); r.Code != 0 {
			t.Fatalf("podman stop: %s\n%s", r, p.diag())
		}
		// SIGTERM reached the trap: no wait for the 20s SIGKILL fallback.
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("podman stop took %v: SIGTERM did not stop the container", d)
		}
		if got := p.inspect(name, "{{.State.Status}} {{.State.ExitCode}}"); got != "exited 0" {
			t.Errorf("after stop: %q, want %q", got, "exited 0")
		}
		if r := p.podman("logs", name); r.Stdout != "started\nstopping\n" {
			t.Errorf("podman logs after stop: %s", r)
		}
		if r := p.podman("rm", name); r.Code != 0 {
			t.Errorf("podman rm: %s\n%s", r, p.diag())
		}
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("container init %d still exists after stop and rm (kill 0: %v)", pid, err)
		}
	})
}
