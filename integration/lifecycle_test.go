//go:build linux

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

func TestRunExitStatus(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script string
		hostNS bool // run in the host pid namespace: a pid-namespace init cannot signal itself to death
		want   int
		stdout string
	}{
		{name: "zero", script: "echo hello", want: 0, stdout: "hello\n"},
		{name: "three", script: "echo before; exit 3", want: 3, stdout: "before\n"},
		{name: "255", script: "exit 255", want: 255},
		{name: "sigkill", script: "kill -KILL $$", hostNS: true, want: 128 + 9},
		{name: "sigterm", script: "kill -TERM $$", hostNS: true, want: 128 + 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle(tc.script, func(s *specs.Spec) {
				if tc.hostNS {
					removeNamespace(s, specs.PIDNamespace)
				}
			})
			out, code := e.runOut("ctr", b)
			if code != tc.want {
				t.Errorf("exit status %d, want %d", code, tc.want)
			}
			if out != tc.stdout {
				t.Errorf("stdout %q, want %q", out, tc.stdout)
			}
		})
	}
}

func TestRunDetached(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("echo detached; sleep 1000")
	pidFile := filepath.Join(t.TempDir(), "pid")
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "--pid-file", pidFile, "ctr")
	st := e.waitStatus("ctr", "running")
	pidB, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(pidB))); pid != st.Pid || pid <= 0 {
		t.Errorf("pid file %q, state pid %d", pidB, st.Pid)
	}
	e.waitFileContains(out.Name(), "detached\n")
	e.mustKnast("kill", "ctr", "KILL")
	e.waitStatus("ctr", "stopped")
	e.mustKnast("delete", "ctr")
}

func TestCreateStart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("echo started > /tmp/marker; exec sleep 1000", func(s *specs.Spec) {
		s.Annotations = map[string]string{"org.knast.test": "yes"}
	})
	marker := rootfsPath(b, "tmp/marker")
	pidFile := filepath.Join(t.TempDir(), "pid")
	start := time.Now().Add(-time.Second)
	e.mustKnast("create", "--bundle", b, "--pid-file", pidFile, "ctr")

	st := e.state("ctr")
	if st.Status != "created" {
		t.Errorf("status after create %q, want created", st.Status)
	}
	if _, err := os.Stat(marker); !os.IsNotExist(err) {
		t.Errorf("marker after create: %v, want not exist (user process must not run before start)", err)
	}
	pidB, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file after create: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(pidB)))
	if err != nil || pid != st.Pid || !pidAlive(pid) {
		t.Errorf("pid file %q (alive %v), state pid %d", pidB, pidAlive(pid), st.Pid)
	}
	wantRootfs := filepath.Join(b, "rootfs")
	if st.ID != "ctr" || st.Bundle != b || st.Rootfs != wantRootfs ||
		st.OCIVersion == "" || st.Created.Before(start) ||
		st.Created.After(time.Now()) || st.Annotations["org.knast.test"] != "yes" {
		t.Errorf("state = %+v; want id ctr, bundle %s, rootfs %s, created just now, annotation", st, b, wantRootfs)
	}

	e.mustKnast("start", "ctr")
	if got := e.waitFile(marker); got != "started\n" {
		t.Errorf("marker %q", got)
	}
	if st := e.state("ctr"); st.Status != "running" || st.Pid != pid {
		t.Errorf("after start: status %q pid %d, want running pid %d", st.Status, st.Pid, pid)
	}
	e.mustKnast("kill", "ctr", "KILL")
	if st := e.waitStatus("ctr", "stopped"); st.Pid != 0 && pidAlive(st.Pid) {
		t.Errorf("stopped with live pid %d", st.Pid)
	}
	e.mustKnast("delete", "ctr")
	r := e.knast("state", "ctr")
	if r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
		t.Errorf("state after delete: %s; want failure naming 'does not exist'", r)
	}
}

func TestStateFields(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("sleep 1000")
	e.mustKnast("create", "--bundle", b, "ctr")
	r := e.mustKnast("state", "ctr")
	var raw map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &raw); err != nil {
		t.Fatalf("state JSON: %v: %q", err, r.Stdout)
	}
	for _, k := range []string{"ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "owner"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("state JSON lacks %q: %s", k, r.Stdout)
		}
	}
	if raw["owner"] != "" && raw["owner"] != "root" {
		t.Errorf("owner %v, want root or empty as runc prints", raw["owner"])
	}
	e.mustKnast("delete", "ctr")
}

func TestKillSignals(t *testing.T) {
	t.Parallel()
	// A pid-namespace init only receives signals it handles (SIGKILL excepted), so the trapping
	// process reports each signal it gets.
	trap := `for s in TERM HUP USR1; do trap "echo got-$s; exit 7" $s; done; echo ready; while :; do sleep 0.05; done`
	for _, tc := range []struct {
		name   string
		args   []string
		script string
		want   string // printed by the container, "" for SIGKILL
	}{
		{name: "default-term", args: nil, script: trap, want: "got-TERM"},
		{name: "name", args: []string{"HUP"}, script: trap, want: "got-HUP"},
		{name: "signame", args: []string{"SIGUSR1"}, script: trap, want: "got-USR1"},
		{name: "number", args: []string{"10"}, script: trap, want: "got-USR1"},
		{name: "KILL", args: []string{"KILL"}, script: "echo ready; sleep 1000"},
		{name: "SIGKILL", args: []string{"SIGKILL"}, script: "echo ready; sleep 1000"},
		{name: "9", args: []string{"9"}, script: "echo ready; sleep 1000"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle(tc.script)
			out := e.outFile()
			if r := e.knastWith(&opts{stdout: out}, "create", "--bundle", b, "ctr"); r.Code != 0 {
				t.Fatalf("%s", r)
			}
			e.mustKnast("start", "ctr")
			e.waitFileContains(out.Name(), "ready\n")
			e.mustKnast(append([]string{"kill", "ctr"}, tc.args...)...)
			e.waitStatus("ctr", "stopped")
			if tc.want != "" {
				e.waitFileContains(out.Name(), tc.want)
			}
			e.mustKnast("delete", "ctr")
		})
	}
}

func TestKillAll(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("sleep 1000 & sleep 1000 & echo ready; wait")
	out := e.outFile()
	e.knastWith(&opts{stdout: out}, "run", "-d", "--bundle", b, "ctr")
	e.waitFileContains(out.Name(), "ready")
	e.mustKnast("kill", "--all", "ctr", "KILL")
	e.waitStatus("ctr", "stopped")
	// runc: kill --all of a stopped container succeeds.
	e.mustKnast("kill", "--all", "ctr", "KILL")
	e.mustKnast("delete", "ctr")
}

func TestKillStoppedFails(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("true")
	e.mustKnast("run", "-d", "--bundle", b, "ctr")
	e.waitStatus("ctr", "stopped")
	if r := e.knast("kill", "ctr", "KILL"); r.Code == 0 {
		t.Errorf("kill of a stopped container succeeded: %s", r)
	}
	e.mustKnast("delete", "ctr")
}

func TestDelete(t *testing.T) {
	t.Parallel()
	t.Run("created", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.bundle("echo ran > /tmp/marker")
		e.mustKnast("create", "--bundle", b, "ctr")
		pid := e.state("ctr").Pid
		e.mustKnast("delete", "ctr")
		e.waitPidGone(pid)
		if _, err := os.Stat(rootfsPath(b, "tmp/marker")); !os.IsNotExist(err) {
			t.Errorf("user process ran after delete of a created container: %v", err)
		}
	})
	t.Run("running-needs-force", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.bundle("sleep 1000")
		e.mustKnast("run", "-d", "--bundle", b, "ctr")
		pid := e.waitStatus("ctr", "running").Pid
		if r := e.knast("delete", "ctr"); r.Code == 0 {
			t.Errorf("delete of a running container without --force succeeded: %s", r)
		}
		if st := e.state("ctr"); st.Status != "running" || !pidAlive(pid) {
			t.Errorf("after refused delete: status %q, alive %v", st.Status, pidAlive(pid))
		}
		e.mustKnast("delete", "--force", "ctr")
		e.waitPidGone(pid)
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		e.mustKnast("delete", "--force", "nope")
		r := e.knast("delete", "nope")
		if r.Code == 0 || !strings.Contains(r.Stderr, "does not exist") {
			t.Errorf("delete of a missing container: %s; want failure with 'does not exist'", r)
		}
	})
}

func TestList(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	if r := e.mustKnast("list", "-q"); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("list -q of an empty root: %q", r.Stdout)
	}
	b1 := e.bundle("sleep 1000")
	b2 := e.bundle("sleep 1000")
	e.mustKnast("create", "--bundle", b1, "c1")
	e.mustKnast("run", "-d", "--bundle", b2, "c2")
	e.waitStatus("c2", "running")

	if r := e.mustKnast("list", "-q"); r.Stdout != "c1\nc2\n" {
		t.Errorf("list -q = %q, want c1 and c2", r.Stdout)
	}
	r := e.mustKnast("list", "--format", "json")
	var list []containerState
	if err := json.Unmarshal([]byte(r.Stdout), &list); err != nil {
		t.Fatalf("list json: %v: %q", err, r.Stdout)
	}
	got := map[string]string{}
	for _, c := range list {
		got[c.ID] = c.Status
		if c.Pid <= 0 || c.Bundle == "" {
			t.Errorf("list entry %+v lacks pid or bundle", c)
		}
	}
	if got["c1"] != "created" || got["c2"] != "running" || len(got) != 2 {
		t.Errorf("list json statuses %v, want c1 created, c2 running", got)
	}
	r = e.mustKnast("list")
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(fields(lines[0]), "ID PID STATUS BUNDLE") {
		t.Errorf("list table = %q, want a runc header and two rows", r.Stdout)
	}
	e.mustKnast("delete", "c1")
	e.mustKnast("delete", "--force", "c2")
}

func TestBadInputs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		id    string
		setup func(t *testing.T, bundle string)
		want  []string // substrings of stderr
		re    string   // a regexp stderr must match
	}{
		{
			name:  "malformed-json",
			id:    "ctr",
			setup: writeConfig("{\n  \"ociVersion\": \"1.0.2\",\n  \"process\": {,\n}\n"),
			re:    `config\.json(:| line )3\b`,
		},
		{
			name: "wrong-type",
			id:   "ctr",
			setup: writeConfig("{\n  \"ociVersion\": \"1.0.2\",\n  \"root\": {\"path\": \"rootfs\"},\n" +
				"  \"process\": {\"cwd\": \"/\", \"args\": \"sh\"}\n}\n"),
			want: []string{"config.json", "process.args"},
		},
		{
			name:  "empty-args",
			id:    "ctr",
			setup: editSpec(func(s *specs.Spec) { s.Process.Args = nil }),
			want:  []string{"config.json", "process.args"},
		},
		{
			name:  "relative-cwd",
			id:    "ctr",
			setup: editSpec(func(s *specs.Spec) { s.Process.Cwd = "relative" }),
			want:  []string{"process.cwd"},
		},
		{
			name: "missing-rootfs",
			id:   "ctr",
			setup: func(t *testing.T, b string) {
				if err := os.RemoveAll(filepath.Join(b, "rootfs")); err != nil {
					t.Fatal(err)
				}
			},
			want: []string{"rootfs"},
		},
		{name: "id-dotdot", id: "../x"},
		{name: "id-slash", id: "a/b"},
		{name: "id-empty", id: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle("true")
			if tc.setup != nil {
				tc.setup(t, b)
			}
			before, _ := os.ReadDir(filepath.Dir(e.root))
			r := e.knast("create", "--bundle", b, tc.id)
			if r.Code == 0 {
				t.Fatalf("create succeeded, want failure: %s", r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("stderr %q lacks %q", r.Stderr, w)
				}
			}
			if tc.re != "" && !regexp.MustCompile(tc.re).MatchString(r.Stderr) {
				t.Errorf("stderr %q does not match %q", r.Stderr, tc.re)
			}
			if r.Stderr == "" {
				t.Errorf("failure without a message: %s", r)
			}
			// An escaping ID must not create anything next to the root either.
			after, _ := os.ReadDir(filepath.Dir(e.root))
			if len(after) != len(before) {
				t.Errorf("entries beside --root changed: %v -> %v", before, after)
			}
			if _, err := os.Stat(filepath.Join(e.root, "..", "x")); err == nil {
				t.Errorf("create %q made %s", tc.id, filepath.Join(e.root, "..", "x"))
			}
		})
	}
}

func writeConfig(content string) func(t *testing.T, b string) {
	return func(t *testing.T, b string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(b, "config.json"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func editSpec(fn func(*specs.Spec)) func(t *testing.T, b string) {
	return func(t *testing.T, b string) {
		t.Helper()
		p := filepath.Join(b, "config.json")
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s specs.Spec
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatal(err)
		}
		fn(&s)
		raw, err = json.Marshal(&s)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, raw, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestDuplicateID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("echo ran > /tmp/marker; sleep 1000")
	e.mustKnast("create", "--bundle", b, "ctr")
	pid := e.state("ctr").Pid
	b2 := e.bundle("true")
	r := e.knast("create", "--bundle", b2, "ctr")
	if r.Code == 0 || !strings.Contains(r.Stderr, "exist") {
		t.Errorf("second create with the same ID: %s; want failure naming 'exist'", r)
	}
	if st := e.state("ctr"); st.Status != "created" || st.Pid != pid || st.Bundle != b || !pidAlive(pid) {
		t.Errorf("first container after a duplicate create: %+v (alive %v)", st, pidAlive(pid))
	}
	e.mustKnast("start", "ctr")
	e.waitFile(rootfsPath(b, "tmp/marker"))
	e.mustKnast("delete", "--force", "ctr")
}

func TestStartTwice(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("echo x >> /tmp/marker; sleep 1000")
	e.mustKnast("create", "--bundle", b, "ctr")
	e.mustKnast("start", "ctr")
	e.waitFile(rootfsPath(b, "tmp/marker"))
	if r := e.knast("start", "ctr"); r.Code == 0 {
		t.Errorf("second start succeeded: %s", r)
	}
	if st := e.state("ctr"); st.Status != "running" {
		t.Errorf("after second start: status %q", st.Status)
	}
	time.Sleep(100 * time.Millisecond)
	if got, _ := os.ReadFile(rootfsPath(b, "tmp/marker")); string(got) != "x\n" {
		t.Errorf("marker %q, want the process to run once", got)
	}
	e.mustKnast("delete", "--force", "ctr")
	// Starting a stopped or missing container fails too.
	if r := e.knast("start", "ctr"); r.Code == 0 {
		t.Errorf("start of a deleted container succeeded: %s", r)
	}
}

func TestSpecCommand(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dir := t.TempDir()
	e.mustKnast("spec", "--bundle", dir)
	raw, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatalf("spec output: %v", err)
	}
	if s.Root == nil || s.Root.Path != "rootfs" || s.Process == nil || len(s.Process.Args) == 0 {
		t.Errorf("default spec lacks root rootfs or process args: %s", raw)
	}
	for _, ns := range []specs.LinuxNamespaceType{specs.PIDNamespace, specs.MountNamespace,
		specs.NetworkNamespace, specs.IPCNamespace, specs.UTSNamespace} {
		if !hasNamespace(&s, ns) {
			t.Errorf("default spec lacks the %s namespace", ns)
		}
	}
	if hasNamespace(&s, specs.UserNamespace) {
		t.Errorf("default spec has a user namespace")
	}
	if r := e.knast("spec", "--bundle", dir); r.Code == 0 {
		t.Errorf("spec over an existing config.json succeeded: %s", r)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "config.json")); string(again) != string(raw) {
		t.Errorf("refused spec still changed config.json")
	}

	rl := t.TempDir()
	e.mustKnast("spec", "--rootless", "--bundle", rl)
	rs, err := os.ReadFile(filepath.Join(rl, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r specs.Spec
	if err := json.Unmarshal(rs, &r); err != nil {
		t.Fatal(err)
	}
	if !hasNamespace(&r, specs.UserNamespace) || len(r.Linux.UIDMappings) == 0 || len(r.Linux.GIDMappings) == 0 {
		t.Errorf("rootless spec lacks a user namespace with mappings: %s", rs)
	}
}

func TestFeatures(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.mustKnast("features")
	var f features.Features
	if err := json.Unmarshal([]byte(r.Stdout), &f); err != nil {
		t.Fatalf("features: %v: %q", err, r.Stdout)
	}
	if f.OCIVersionMin == "" || f.OCIVersionMax == "" {
		t.Errorf("features lack OCI versions: %s", r.Stdout)
	}
	if len(f.Hooks) == 0 || len(f.MountOptions) == 0 {
		t.Errorf("features lack hooks or mount options: %s", r.Stdout)
	}
	if f.Linux == nil || !slices.Contains(f.Linux.Namespaces, string(specs.UserNamespace)) {
		t.Errorf("features lack the user namespace: %s", r.Stdout)
	}
	if !slices.Contains(f.MountOptions, "rro") {
		t.Errorf("features lack the rro mount option: %s", r.Stdout)
	}
}

func TestJSONLogError(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	r := e.knast("--log", logPath, "--log-format", "json", "delete", "nope")
	if r.Code == 0 {
		t.Fatalf("delete of a missing container succeeded: %s", r)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	var last struct {
		Level string `json:"level"`
		Msg   string `json:"msg"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil {
		t.Fatalf("last log line %q: %v", lines[len(lines)-1], err)
	}
	if last.Level != "error" || !strings.Contains(last.Msg, "does not exist") {
		t.Errorf("last log line %+v, want level error and msg naming 'does not exist'", last)
	}
}

func TestCreateFlags(t *testing.T) {
	t.Parallel()
	for _, flags := range [][]string{{"--no-pivot"}, {"--no-new-keyring"}, {"--no-pivot", "--no-new-keyring"}} {
		t.Run(strings.Join(flags, ""), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			// The rootfs is still the container's root: the host's files are not reachable.
			b := e.bundle(`ls /bin/busybox; test -e /work -o -e /usr/lib/os-release && echo host-visible; echo ok`)
			out := e.outFile()
			args := append(append([]string{"create"}, flags...), "--bundle", b, "ctr")
			if r := e.knastWith(&opts{stdout: out}, args...); r.Code != 0 {
				t.Fatalf("%s", r)
			}
			e.mustKnast("start", "ctr")
			e.waitStatus("ctr", "stopped")
			if got, _ := os.ReadFile(out.Name()); string(got) != "/bin/busybox\nok\n" {
				t.Errorf("inside: %q, want the rootfs as / and nothing of the host", got)
			}
			e.mustKnast("delete", "ctr")
		})
	}
}
