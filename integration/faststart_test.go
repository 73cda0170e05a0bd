//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// goStarted reports whether a knast invocation started its Go runtime: with GODEBUG=inittrace=1 the
// runtime prints one "init <package> @..." line per package initialiser, and the C start exits before.
func goStarted(r result) bool {
	return strings.Contains(r.Stderr, "init runtime @") || strings.Contains(r.Stderr, "\ninit ")
}

var inittrace = &opts{env: []string{"GODEBUG=inittrace=1"}}

// TestFastStart checks which starts the C constructor does before the Go runtime starts (package
// faststart), and that each start, done there or by Go, starts the container.
func TestFastStart(t *testing.T) {
	t.Parallel()
	logDir := t.TempDir()
	for _, tc := range []struct {
		name    string
		globals func(log string) []string
		hook    bool // a poststart hook: Go must run it
		wantGo  bool
	}{
		{name: "plain", wantGo: false},
		{name: "log flags", globals: func(log string) []string {
			return []string{"--log", log, "--log-format", "json", "--rootless=false", "--criu", "criu"}
		}, wantGo: false},
		{name: "log flags with =", globals: func(log string) []string {
			return []string{"--log=" + log, "--log-format=text"}
		}, wantGo: false},
		{name: "debug", globals: func(string) []string { return []string{"--debug"} }, wantGo: true},
		{name: "poststart hook", hook: true, wantGo: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle("echo started > /tmp/marker; exec sleep 1000")
			if tc.hook {
				editSpec(func(s *specs.Spec) {
					s.Hooks = &specs.Hooks{Poststart: []specs.Hook{{Path: "/bin/sh",
						Args: []string{"sh", "-c", "echo hook > " + rootfsPath(b, "tmp/poststart")}}}}
				})(t, b)
			}
			log := filepath.Join(logDir, strings.ReplaceAll(tc.name, " ", "-")+".log")
			var args []string
			if tc.globals != nil {
				args = tc.globals(log)
			}
			e.mustKnast("create", "--bundle", b, "ctr")
			r := e.knastWith(inittrace, append(args, "start", "ctr")...)
			if r.Code != 0 {
				t.Fatalf("%s", r)
			}
			if got := goStarted(r); got != tc.wantGo {
				t.Errorf("Go runtime started: %v, want %v\n%s", got, tc.wantGo, r)
			}
			if got := e.waitFile(rootfsPath(b, "tmp/marker")); got != "started\n" {
				t.Errorf("marker %q", got)
			}
			if st := e.state("ctr"); st.Status != "running" {
				t.Errorf("status after start %q, want running", st.Status)
			}
			if tc.hook {
				if got := e.waitFile(rootfsPath(b, "tmp/poststart")); got != "hook\n" {
					t.Errorf("poststart hook wrote %q", got)
				}
			}
			if tc.globals != nil && !tc.wantGo {
				// Go creates --log for every command; so does the C start.
				if _, err := os.Stat(log); err != nil {
					t.Errorf("--log file: %v", err)
				}
			}
			if r := e.knast("start", "ctr"); r.Code == 0 || !strings.Contains(r.Stderr, "running") {
				t.Errorf("second start: want a state error naming running, got\n%s", r)
			}
			e.mustKnast("delete", "--force", "ctr")
		})
	}
}

// TestFastStartFallsBack checks the starts the C constructor must leave to Go, and that Go then gives
// the errors a start always gave.
func TestFastStartFallsBack(t *testing.T) {
	t.Parallel()
	t.Run("extra argument", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.bundle("echo started > /tmp/marker; exec sleep 1000")
		e.mustKnast("create", "--bundle", b, "ctr")
		r := e.knastWith(inittrace, "start", "ctr", "more")
		if r.Code == 0 || !goStarted(r) || !strings.Contains(r.Stderr, "expects a container ID, got 2") {
			t.Errorf("start with two arguments: want Go's usage error\n%s", r)
		}
		if st := e.state("ctr"); st.Status != "created" {
			t.Errorf("status %q after a refused start, want created", st.Status)
		}
		e.mustKnast("delete", "--force", "ctr")
	})
	t.Run("init killed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.bundle("exec sleep 1000")
		e.mustKnast("create", "--bundle", b, "ctr")
		e.mustKnast("kill", "ctr", "KILL")
		e.waitStatus("ctr", "stopped")
		r := e.knastWith(inittrace, "start", "ctr")
		if r.Code == 0 || !goStarted(r) || !strings.Contains(r.Stderr, "stopped") {
			t.Errorf("start of a killed container: want Go's state error naming stopped\n%s", r)
		}
		e.mustKnast("delete", "ctr")
	})
	t.Run("missing", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		r := e.knastWith(inittrace, "start", "nosuch")
		if r.Code == 0 || !goStarted(r) || !strings.Contains(r.Stderr, "does not exist") {
			t.Errorf("start of a missing container: want Go's error\n%s", r)
		}
	})
	t.Run("exec fails after the handshake", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		b := e.bundle("", func(s *specs.Spec) { s.Process.Args = []string{"/notelf"} })
		// Executable, but neither ELF nor a script: execve fails with ENOEXEC after the init said "0".
		if err := os.WriteFile(rootfsPath(b, "notelf"), []byte("not a program\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		e.mustKnast("create", "--bundle", b, "ctr")
		r := e.knastWith(inittrace, "start", "ctr")
		// The C start read the answer and handed it to Go, which reports it.
		if r.Code == 0 || !goStarted(r) || !strings.Contains(r.Stderr, "exec format error") {
			t.Errorf("start whose exec fails: want Go to report the exec error\n%s", r)
		}
		e.waitStatus("ctr", "stopped")
		e.mustKnast("delete", "ctr")
	})
}

// TestFastStartConcurrent starts one container from several clients at once: exactly one start wins and
// the others get a state error, whether the handshake was done before Go started or by Go (--debug).
func TestFastStartConcurrent(t *testing.T) {
	t.Parallel()
	for _, globals := range [][]string{nil, {"--debug"}} {
		t.Run(strings.Join(append([]string{"start"}, globals...), " "), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle("echo x >> /tmp/starts; exec sleep 1000")
			for round := range 5 {
				e.mustKnast("create", "--bundle", b, "ctr")
				const n = 4
				results := make([]result, n)
				var wg sync.WaitGroup
				for i := range n {
					wg.Go(func() { results[i] = e.knast(append(globals, "start", "ctr")...) })
				}
				wg.Wait()
				ok := 0
				for _, r := range results {
					switch {
					case r.Code == 0:
						ok++
					case !strings.Contains(r.Stderr, "running"):
						t.Errorf("round %d: a losing start must name the state running:\n%s", round, r)
					}
				}
				if ok != 1 {
					t.Errorf("round %d: %d starts succeeded, want 1", round, ok)
				}
				e.waitFileContains(rootfsPath(b, "tmp/starts"), strings.Repeat("x\n", round+1))
				e.mustKnast("delete", "--force", "ctr")
			}
		})
	}
}
