package container

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hookTestScript writes an sh script into dir and returns its path.
func hookTestScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func hookReadFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func hookIntPtr(n int) *int { return &n }

func hookTestState() *specs.State {
	return &specs.State{
		Version:     specs.Version,
		ID:          "hooked",
		Status:      specs.StateCreated,
		Pid:         4242,
		Bundle:      "/run/bundles/hooked",
		Annotations: map[string]string{"org.example/key": "value"},
	}
}

func TestRunHooksOrderStateEnv(t *testing.T) {
	if _, err := os.Stat("/proc/self/environ"); err != nil {
		t.Skipf("no procfs to read a hook's environment: %v", err)
	}
	dir := t.TempDir()
	var hooks []specs.Hook
	for i := range 3 {
		n := strconv.Itoa(i)
		// Reads its own argv and initial environment from /proc: what was
		// passed to execve, untouched by the shell.
		p := hookTestScript(t, dir, "hook"+n, `cat > "$1/state`+n+`"
echo `+n+` >> "$1/order"
tr '\0' '\n' < /proc/$$/environ > "$1/env`+n+`"
tr '\0' '\n' < /proc/$$/cmdline > "$1/argv`+n+`"`)
		hooks = append(hooks, specs.Hook{
			Path: p,
			Args: []string{"argv0-" + n, dir},
			Env:  []string{"HOOK=" + n, "PATH=/usr/bin:/bin"},
		})
	}
	// A hook without env gets an empty environment, not knast's.
	t.Setenv("KNAST_TEST_LEAK", "1")
	hooks[2].Env = nil

	want := hookTestState()
	if err := RunHooks(context.Background(), "prestart", hooks, want); err != nil {
		t.Fatalf("RunHooks: %v", err)
	}
	if got := hookReadFile(t, filepath.Join(dir, "order")); got != "0\n1\n2\n" {
		t.Errorf("order = %q", got)
	}
	for i, h := range hooks {
		n := strconv.Itoa(i)
		var got specs.State
		if err := json.Unmarshal([]byte(hookReadFile(t, filepath.Join(dir, "state"+n))), &got); err != nil {
			t.Fatalf("hook %d state: %v", i, err)
		}
		if diff := cmp.Diff(*want, got); diff != "" {
			t.Errorf("hook %d state (-want +got):\n%s", i, diff)
		}
		env := strings.Fields(hookReadFile(t, filepath.Join(dir, "env"+n)))
		if diff := cmp.Diff(h.Env, env, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("hook %d env (-want +got):\n%s", i, diff)
		}
		argv := strings.Split(strings.TrimSuffix(hookReadFile(t, filepath.Join(dir, "argv"+n)), "\n"), "\n")
		// The kernel runs the script as "/bin/sh <path> <args[1:]...>";
		// argv[0] reaches the interpreter only through the shebang line, so
		// check what follows it.
		if wantTail := []string{h.Path, dir}; !cmp.Equal(argv[len(argv)-2:], wantTail) {
			t.Errorf("hook %d argv = %q, want it to end in %q", i, argv, wantTail)
		}
	}
}

func TestRunHooksArgv0(t *testing.T) {
	// With a binary as the hook, args[0] is argv[0] verbatim.
	if _, err := os.Stat("/proc/self/cmdline"); err != nil {
		t.Skipf("no procfs to read a hook's argv: %v", err)
	}
	cmdline := filepath.Join(t.TempDir(), "cmdline")
	hooks := []specs.Hook{{
		Path: "/bin/sh",
		Args: []string{"custom-argv0", "-c", `tr '\0' '\n' < /proc/$$/cmdline > "$0"`, cmdline},
	}}
	if err := RunHooks(context.Background(), "poststart", hooks, hookTestState()); err != nil {
		t.Fatalf("RunHooks: %v", err)
	}
	if got := strings.SplitN(hookReadFile(t, cmdline), "\n", 2)[0]; got != "custom-argv0" {
		t.Errorf("argv[0] = %q, want custom-argv0", got)
	}
}

func TestRunHooksFailures(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	ok := hookTestScript(t, dir, "ok", `echo ok >> "`+marker+`"`)
	fail := hookTestScript(t, dir, "fail", `echo "  something broke  " >&2; exit 3`)
	loud := hookTestScript(t, dir, "loud", `head -c 100000 /dev/zero | tr '\0' x >&2; exit 1`)
	pidFile := filepath.Join(dir, "sleeper")
	slow := hookTestScript(t, dir, "slow", `sleep 10 & echo $! > "`+pidFile+`"; wait`)

	tests := []struct {
		name     string
		hooks    []specs.Hook
		want     []string // substrings of the error
		ran      string   // marker contents afterwards
		maxTime  time.Duration
		leftover bool // check the sleeper was killed
	}{
		{
			name:  "failing hook stops later ones",
			hooks: []specs.Hook{{Path: ok}, {Path: fail}, {Path: ok}},
			want:  []string{"createRuntime hook #1 (" + fail + ")", "exit status 3", `stderr: "something broke"`},
			ran:   "ok\n",
		},
		{
			name:  "missing binary",
			hooks: []specs.Hook{{Path: filepath.Join(dir, "nope")}, {Path: ok}},
			want:  []string{"createRuntime hook #0 (" + filepath.Join(dir, "nope") + "): start:", "no such file"},
		},
		{
			name:  "output capped",
			hooks: []specs.Hook{{Path: loud}},
			want:  []string{"exit status 1", "[truncated]"},
		},
		{
			name:     "timeout kills the hook and its children",
			hooks:    []specs.Hook{{Path: slow, Timeout: hookIntPtr(1)}, {Path: ok}},
			want:     []string{"createRuntime hook #0 (" + slow + ")", "killed after timeout of 1s"},
			maxTime:  3 * time.Second,
			leftover: true,
		},
		{
			name:  "non-positive timeout",
			hooks: []specs.Hook{{Path: ok, Timeout: hookIntPtr(0)}},
			want:  []string{"timeout 0: must be positive"},
		},
		{
			name:  "empty path",
			hooks: []specs.Hook{{}},
			want:  []string{"createRuntime hook #0 (): empty path"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.Remove(marker)
			start := time.Now()
			err := RunHooks(context.Background(), "createRuntime", tt.hooks, hookTestState())
			took := time.Since(start)
			if err == nil {
				t.Fatal("RunHooks succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if len(err.Error()) > 2*hookOutputMax+500 {
				t.Errorf("error is %d bytes long", len(err.Error()))
			}
			ran, _ := os.ReadFile(marker)
			if string(ran) != tt.ran {
				t.Errorf("marker = %q, want %q", ran, tt.ran)
			}
			if tt.maxTime > 0 && took > tt.maxTime {
				t.Errorf("took %v, want under %v", took, tt.maxTime)
			}
			if tt.leftover {
				pid, err := strconv.Atoi(strings.TrimSpace(hookReadFile(t, pidFile)))
				if err != nil {
					t.Fatal(err)
				}
				// Killed by the group kill; reaped by init or us soon.
				deadline := time.Now().Add(2 * time.Second)
				for ProcAlive(pid, procMustStart(pid)) {
					if time.Now().After(deadline) {
						syscall.Kill(pid, syscall.SIGKILL)
						t.Fatalf("hook child %d survived the timeout", pid)
					}
					time.Sleep(10 * time.Millisecond)
				}
			}
		})
	}
}

// procMustStart returns pid's start time, or 0 if it is gone.
func procMustStart(pid int) uint64 {
	s, _ := ProcStartTime(pid)
	return s
}

func TestRunHooksContext(t *testing.T) {
	dir := t.TempDir()
	slow := hookTestScript(t, dir, "slow", `exec sleep 10`)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	err := RunHooks(ctx, "poststop", []specs.Hook{{Path: slow}}, hookTestState())
	if err == nil || !strings.Contains(err.Error(), "poststop hook #0") || !strings.Contains(err.Error(), "context canceled") {
		t.Errorf("RunHooks after cancel = %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("cancel took %v", d)
	}
}

func TestRunHooksBackgroundChild(t *testing.T) {
	// A hook that leaves a daemon holding its output open still succeeds,
	// after a bounded wait.
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "daemon")
	h := hookTestScript(t, dir, "daemon", `sleep 30 & echo $! > "`+pidFile+`"; exit 0`)
	start := time.Now()
	err := RunHooks(context.Background(), "poststart", []specs.Hook{{Path: h}}, hookTestState())
	if b, rerr := os.ReadFile(pidFile); rerr == nil {
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil {
		t.Fatalf("RunHooks: %v", err)
	}
	if d := time.Since(start); d > hookWaitDelay+2*time.Second {
		t.Errorf("took %v", d)
	}
}

func TestRunHooksNone(t *testing.T) {
	if err := RunHooks(context.Background(), "prestart", nil, nil); err != nil {
		t.Errorf("RunHooks with no hooks: %v", err)
	}
}
