//go:build linux

package integration

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// statusField returns a field of a /proc/<pid>/status style text.
func statusField(status, name string) string {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, name+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func TestSurfaceExec(t *testing.T) {
	t.Parallel()
	const netAdminBit = 12
	capEff := func(t *testing.T, out string) uint64 {
		v, err := strconv.ParseUint(statusField(out, "CapEff"), 16, 64)
		if err != nil {
			t.Fatalf("CapEff in %q: %v", out, err)
		}
		return v
	}
	for _, tc := range []struct {
		name  string
		args  []string // exec flags before the ID
		cmd   []string // the command after the ID
		code  int
		check func(t *testing.T, out string)
	}{
		{
			name: "output-and-status",
			cmd:  []string{"sh", "-c", "echo hello; echo err >&2; exit 5"},
			code: 5,
			check: func(t *testing.T, out string) {
				if out != "hello\n" {
					t.Errorf("stdout %q, want hello", out)
				}
			},
		},
		{
			name: "env-and-cwd",
			args: []string{"--env", "FOO=bar", "--env", "PATH=/bin", "--cwd", "/tmp"},
			cmd:  []string{"sh", "-c", `echo "$FOO $PATH $(pwd)"`},
			check: func(t *testing.T, out string) {
				if out != "bar /bin /tmp\n" {
					t.Errorf("stdout %q, want %q", out, "bar /bin /tmp\n")
				}
			},
		},
		{
			name: "user-and-groups",
			args: []string{"--user", "1000:1000", "-g", "10", "-g", "20"},
			cmd:  []string{"sh", "-c", "id -u; id -g; grep -E '^(Uid|Gid|Groups):' /proc/self/status"},
			check: func(t *testing.T, out string) {
				lines := strings.Split(out, "\n")
				if len(lines) < 5 || lines[0] != "1000" || lines[1] != "1000" ||
					fields(statusField(out, "Uid")) != "1000 1000 1000 1000" ||
					fields(statusField(out, "Gid")) != "1000 1000 1000 1000" ||
					fields(statusField(out, "Groups")) != "10 20" {
					t.Errorf("ids %q, want uid/gid 1000 and groups 10 20", out)
				}
			},
		},
		{
			name: "default-caps-lack-net-admin",
			cmd:  []string{"cat", "/proc/self/status"},
			check: func(t *testing.T, out string) {
				if capEff(t, out)&(1<<netAdminBit) != 0 {
					t.Errorf("CapEff %s has CAP_NET_ADMIN without --cap", statusField(out, "CapEff"))
				}
			},
		},
		{
			name: "cap",
			args: []string{"--cap", "CAP_NET_ADMIN"},
			cmd:  []string{"cat", "/proc/self/status"},
			check: func(t *testing.T, out string) {
				eff := capEff(t, out)
				if eff&(1<<netAdminBit) == 0 {
					t.Errorf("CapEff %s lacks CAP_NET_ADMIN", statusField(out, "CapEff"))
				}
				if eff&(1<<5) == 0 { // CAP_KILL of the spec is kept
					t.Errorf("CapEff %s lost the spec's CAP_KILL", statusField(out, "CapEff"))
				}
			},
		},
		{
			name: "new-privs-default",
			cmd:  []string{"cat", "/proc/self/status"},
			check: func(t *testing.T, out string) {
				if v := statusField(out, "NoNewPrivs"); v != "0" {
					t.Errorf("NoNewPrivs %q without the flag (spec has it off), want 0", v)
				}
			},
		},
		{
			name: "no-new-privs",
			args: []string{"--no-new-privs"},
			cmd:  []string{"cat", "/proc/self/status"},
			check: func(t *testing.T, out string) {
				if v := statusField(out, "NoNewPrivs"); v != "1" {
					t.Errorf("NoNewPrivs %q, want 1", v)
				}
			},
		},
		{
			name: "sees-init-as-pid-1",
			cmd:  []string{"sh", "-c", `echo $$; tr '\0' ' ' < /proc/1/cmdline`},
			check: func(t *testing.T, out string) {
				lines := strings.Split(strings.TrimSpace(out), "\n")
				if len(lines) != 2 || lines[0] == "1" || !strings.Contains(lines[1], "sleep 1000") {
					t.Errorf("inside the exec: %q, want its own pid != 1 and pid 1 the init (sleep 1000)", out)
				}
			},
		},
		{
			name: "missing-command",
			cmd:  []string{"/nonexistent"},
			code: -1, // any failure
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newSurfaceEnv(t)
			b := e.bundle(readyScript, e.withCgroup("ctr"), func(s *specs.Spec) { s.Process.NoNewPrivileges = false })
			out := e.outFile()
			e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
			e.waitFileContains(out.Name(), "ready\n")
			args := append(append(append([]string{"exec"}, tc.args...), "ctr"), tc.cmd...)
			r := e.knast(args...)
			switch {
			case tc.code == -1:
				if r.Code == 0 || r.Stderr == "" {
					t.Errorf("want a failure with a message: %s", r)
				}
			case r.Code != tc.code:
				t.Errorf("exit %d, want %d: %s", r.Code, tc.code, r)
			}
			if tc.check != nil {
				tc.check(t, r.Stdout)
			}
			if st := e.state("ctr"); st.Status != "running" {
				t.Errorf("container after exec: %q, want running", st.Status)
			}
			e.mustKnast("delete", "--force", "ctr")
		})
	}
}

func TestSurfaceExecProcessFile(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"))
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
	e.waitFileContains(out.Name(), "ready\n")
	p := specs.Process{
		Args: []string{"sh", "-c", `echo "$GREETING $(id -u):$(id -g) $(pwd)"; exit 4`},
		Env:  []string{"PATH=/bin", "GREETING=hi", e.token, suiteToken},
		Cwd:  "/home/user",
		User: specs.User{UID: 1000, GID: 1000},
	}
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	pf := filepath.Join(t.TempDir(), "process.json")
	if err := os.WriteFile(pf, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r := e.knast("exec", "--process", pf, "ctr")
	if r.Code != 4 || r.Stdout != "hi 1000:1000 /home/user\n" {
		t.Errorf("exec --process: %s; want exit 4 and %q", r, "hi 1000:1000 /home/user\n")
	}
	e.mustKnast("delete", "--force", "ctr")
}

// TestSurfaceExecJoins checks that a detached exec'd process shares every namespace and cgroup of the init.
func TestSurfaceExecJoins(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"), func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	})
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
	e.waitFileContains(out.Name(), "ready\n")
	initPid := e.state("ctr").Pid
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	r := e.mustKnast("exec", "-d", "--pid-file", pidFile, "ctr", "sleep", "999")
	if r.Stdout != "" {
		t.Errorf("exec -d printed %q", r.Stdout)
	}
	pidB, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidB)))
	if err != nil || !pidAlive(pid) || pid == initPid {
		t.Fatalf("pid file %q: not a live process other than the init %d", pidB, initPid)
	}
	e.track(pid)
	// runc's exec -d may return before the process has called execve: wait for it.
	e.waitCond("the exec'd sleep 999", func() bool {
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		return string(cmdline) == "sleep\x00999\x00"
	})
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/ns", initPid))
	if err != nil {
		t.Fatal(err)
	}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	for _, ent := range ents {
		want, err1 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", initPid, ent.Name()))
		got, err2 := os.Readlink(fmt.Sprintf("/proc/%d/ns/%s", pid, ent.Name()))
		if err1 != nil || err2 != nil || got != want {
			t.Errorf("ns %s: exec'd %q (%v), init %q (%v)", ent.Name(), got, err2, want, err1)
		}
	}
	if m, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); m == self {
		t.Errorf("exec'd process is in the host's mount namespace")
	}
	initCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", initPid))
	execCg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if len(initCg) == 0 || string(initCg) != string(execCg) {
		t.Errorf("cgroups: exec'd\n%s\ninit\n%s", execCg, initCg)
	}
	root, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", pid))
	initRoot, _ := os.Readlink(fmt.Sprintf("/proc/%d/root", initPid))
	if root != initRoot {
		t.Errorf("root: exec'd %q, init %q", root, initRoot)
	}
	e.mustKnast("delete", "--force", "ctr")
	e.waitPidGone(pid)
}

func TestSurfaceExecTTY(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"))
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
	e.waitFileContains(out.Name(), "ready\n")

	sock := filepath.Join(t.TempDir(), "console.sock")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type recv struct {
		f   *os.File
		err error
	}
	got := make(chan recv, 1)
	go func() {
		f, err := receiveMaster(e.ctx, l)
		got <- recv{f, err}
	}()
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	e.mustKnast("exec", "-t", "-d", "--console-socket", sock, "--pid-file", pidFile, "ctr", "sh")
	rc := <-got
	if rc.err != nil {
		t.Fatalf("receiving the pty master: %v", rc.err)
	}
	master := rc.f
	defer master.Close()
	pidB, _ := os.ReadFile(pidFile)
	pid, _ := strconv.Atoi(strings.TrimSpace(string(pidB)))
	e.track(pid)
	// Only the shell's output holds "x42y", not the echoed command line.
	if _, err := master.WriteString("[ -t 0 ] && [ -t 1 ] && echo tty$((1+1))ok; echo x$((6*7))y; exit 3\n"); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	chunk := make([]byte, 1024)
	master.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(buf.String(), "x42y") {
		n, err := master.Read(chunk)
		buf.Write(chunk[:n])
		if err != nil {
			if !errors.Is(err, unix.EIO) {
				t.Errorf("reading the pty: %v", err)
			}
			break
		}
	}
	if !strings.Contains(buf.String(), "tty2ok") || !strings.Contains(buf.String(), "x42y") {
		t.Errorf("pty output %q, want tty2ok and x42y", buf.String())
	}
	if pid > 0 {
		e.waitPidGone(pid)
	}
	if st := e.state("ctr"); st.Status != "running" {
		t.Errorf("container after the exec'd shell exited: %q", st.Status)
	}
	e.mustKnast("delete", "--force", "ctr")
}

func TestSurfaceExecPreserveFds(t *testing.T) {
	t.Parallel()
	e := newSurfaceEnv(t)
	b := e.bundle(readyScript, e.withCgroup("ctr"))
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
	e.waitFileContains(out.Name(), "ready\n")
	f3, err := os.Create(filepath.Join(t.TempDir(), "fd3"))
	if err != nil {
		t.Fatal(err)
	}
	defer f3.Close()
	f4, err := os.Create(filepath.Join(t.TempDir(), "fd4"))
	if err != nil {
		t.Fatal(err)
	}
	defer f4.Close()
	r := e.knastWith(&opts{extraFiles: []*os.File{f3, f4}}, "exec", "--preserve-fds", "1", "ctr",
		"sh", "-c", "echo via3 >&3; if echo via4 >&4; then echo fd4-open; else echo fd4-closed; fi")
	if r.Code != 0 || !strings.Contains(r.Stdout, "fd4-closed") {
		t.Errorf("exec --preserve-fds 1: %s; want fd 4 closed", r)
	}
	if b, _ := os.ReadFile(f3.Name()); string(b) != "via3\n" {
		t.Errorf("preserved fd 3 got %q, want via3", b)
	}
	if b, _ := os.ReadFile(f4.Name()); len(b) != 0 {
		t.Errorf("unpreserved fd 4 got %q", b)
	}
	e.mustKnast("delete", "--force", "ctr")
}

func TestSurfaceExecRefused(t *testing.T) {
	t.Parallel()
	t.Run("stopped", func(t *testing.T) {
		t.Parallel()
		e := newSurfaceEnv(t)
		b := e.bundle("true", e.withCgroup("ctr"))
		e.mustKnast("run", "-d", "--bundle", b, "ctr")
		e.waitStatus("ctr", "stopped")
		r := e.knast("exec", "ctr", "echo", "hi")
		if r.Code == 0 || r.Stdout != "" || !(strings.Contains(r.Stderr, "stopped") || strings.Contains(r.Stderr, "not running")) {
			t.Errorf("exec into a stopped container: %s; want a failure naming stopped/not running", r)
		}
		e.mustKnast("delete", "ctr")
	})
	t.Run("created", func(t *testing.T) {
		t.Parallel()
		e := newSurfaceEnv(t)
		b := e.bundle("sleep 1000", e.withCgroup("ctr"))
		e.mustKnast("create", "--bundle", b, "ctr")
		// runc allows exec into a created container; whatever the runtime does, the init must not start.
		e.knast("exec", "ctr", "true")
		if st := e.state("ctr"); st.Status != "created" {
			t.Errorf("after exec into a created container: status %q, want created", st.Status)
		}
		e.mustKnast("delete", "--force", "ctr")
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := e.knast("exec", "nope", "true")
		if r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
			t.Errorf("exec into a missing container: %s", r)
		}
	})
	t.Run("paused", func(t *testing.T) {
		t.Parallel()
		e := newSurfaceEnv(t)
		b := e.bundle(readyScript, e.withCgroup("ctr"))
		out := e.outFile()
		e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
		e.waitFileContains(out.Name(), "ready\n")
		e.mustKnast("pause", "ctr")
		r := e.knast("exec", "ctr", "echo", "hi")
		if r.Code == 0 || r.Stdout != "" || !strings.Contains(r.Stderr, "paused") {
			t.Errorf("exec into a paused container: %s; want a failure naming paused", r)
		}
		// With --ignore-paused the exec goes ahead, its process frozen with the rest until resume (runc's
		// exec blocks until then; a runtime may also return early).
		marker := rootfsPath(b, "tmp/marker")
		_, wait, _ := e.bg("exec", "--ignore-paused", "ctr", "sh", "-c", "echo ran > /tmp/marker")
		time.Sleep(300 * time.Millisecond)
		if _, err := os.Stat(marker); !os.IsNotExist(err) {
			t.Errorf("exec --ignore-paused ran while the container was paused: %v", err)
		}
		if st := e.state("ctr"); st.Status != "paused" {
			t.Errorf("after exec --ignore-paused: status %q, want paused", st.Status)
		}
		e.mustKnast("resume", "ctr")
		if code, err := wait(); code != 0 {
			t.Errorf("exec --ignore-paused: exit %d (%v) after resume", code, err)
		}
		if got := e.waitFile(marker); got != "ran\n" {
			t.Errorf("marker %q", got)
		}
		e.mustKnast("delete", "--force", "ctr")
	})
}
