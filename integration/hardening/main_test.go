//go:build linux

package hardening

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

// suite is the state TestMain shares with the tests: the binary, and the counters of the summary.
type suiteState struct {
	bin     string
	tmp     string
	token   string
	crashes atomic.Int64 // SIGKILLs injected into a running knast
	ops     atomic.Int64 // operations issued by the concurrent clients
	hostile atomic.Int64 // hostile images, configs and escape attempts tried
	mu      sync.Mutex
	passed  int
	failed  int
	skipped int
}

var suite suiteState

// testTimeout bounds one test, so that a hung container cannot hang CI.
const testTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping hardening tests: they need root (namespaces, mounts, cgroups)")
		return 0
	}
	dir, err := os.MkdirTemp("", "knast-hardening-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Every t.TempDir lives under dir, so mount checks can be scoped to it.
	os.Setenv("TMPDIR", dir)
	suite.tmp = dir
	if suite.bin, err = testutil.BuildKnast(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suite.token = fmt.Sprintf("KNAST_HARDENING_SUITE=%d", os.Getpid())
	before, err := testutil.TakeSnapshot(testutil.Scope{Paths: []string{dir}, Token: suite.token})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if leaks := before.WaitLeaks(5 * time.Second); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "hardening suite leaked:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	printSummary(code)
	return code
}

// printSummary prints the numbers CI shows: fuzz executions (from hardening/fuzz.sh's summary file,
// when $KNAST_FUZZ_SUMMARY names one), crashes injected, operations under load, hostile inputs and
// the test tally.
func printSummary(code int) {
	fmt.Println("=== knast hardening summary ===")
	if p := os.Getenv("KNAST_FUZZ_SUMMARY"); p != "" {
		if f, err := os.Open(p); err == nil {
			var total int64
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				var target string
				var n int64
				if _, err := fmt.Sscanf(sc.Text(), "%s %d", &target, &n); err == nil {
					fmt.Printf("fuzz executions: %-40s %d\n", target, n)
					total += n
				}
			}
			f.Close()
			fmt.Printf("fuzz executions: total %d\n", total)
		}
	} else {
		fmt.Println("fuzz executions: not run (hardening/fuzz.sh sets KNAST_FUZZ_SUMMARY)")
	}
	suite.mu.Lock()
	defer suite.mu.Unlock()
	fmt.Printf("crashes injected: %d\n", suite.crashes.Load())
	fmt.Printf("operations under load: %d\n", suite.ops.Load())
	fmt.Printf("hostile inputs tried: %d\n", suite.hostile.Load())
	fmt.Printf("%d passed, %d failed, %d skipped (exit %d)\n", suite.passed, suite.failed, suite.skipped, code)
}

// tally counts t (a test or subtest) in the summary when it ends.
func tally(t *testing.T) {
	t.Cleanup(func() {
		suite.mu.Lock()
		defer suite.mu.Unlock()
		switch {
		case t.Failed():
			suite.failed++
		case t.Skipped():
			suite.skipped++
		default:
			suite.passed++
		}
	})
}

// env is one test's private knast world: --root, --storage, a token in the environment of every
// process it starts, and a leak snapshot (mounts under its temp dir, state entries, processes,
// the root's cgroups) checked when the test ends.
type env struct {
	t       *testing.T
	ctx     context.Context
	dir     string
	root    string
	storage string
	token   string
	before  testutil.Snapshot
	links   []string // network interface prefixes in the leak scope (newNetwork)
	nft     []string // nft tables in the leak scope (newNetwork)
}

func newEnv(t *testing.T) *env {
	t.Helper()
	tally(t)
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	dir := t.TempDir()
	e := &env{
		t:       t,
		ctx:     ctx,
		dir:     dir,
		root:    filepath.Join(dir, "root"),
		storage: filepath.Join(dir, "storage"),
		token:   "KNAST_HTEST=" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()),
	}
	if err := os.Mkdir(e.root, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	if e.before, err = testutil.TakeSnapshot(e.scope()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.checkLeaks)
	return e
}

func (e *env) scope() testutil.Scope {
	return testutil.Scope{
		Root:    e.root,
		Paths:   []string{e.dir},
		Token:   e.token,
		Cgroups: []string{testutil.KnastCgroupParent(e.root)},
		// Without a network: no links or tables are watched (other suites' would be seen).
		LinkPrefixes: e.links,
		NftTables:    e.nft,
	}
}

// leaks retakes the snapshot and lists what is new since the test began. The root's parent cgroup
// (KnastCgroupParent) outlives its last container by design, so it is removed first where it is
// empty (rmdir of a cgroup with children fails) and only container cgroups count as leaks.
func (e *env) leaks() []string {
	e.removeCgroupParent()
	return e.before.WaitLeaks(5 * time.Second)
}

func (e *env) removeCgroupParent() { testutil.RemoveCgroupParent(e.root) }

// checkLeaks fails the test if containers, state, mounts, processes or cgroups are left, then removes
// what it can so that one failure does not cascade.
func (e *env) checkLeaks() {
	t := e.t
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := e.runCtx(ctx, "list", "-q")
	if res.code != 0 {
		t.Errorf("leak check: knast list -q: %s", res)
	}
	ids := strings.Fields(res.stdout)
	if len(ids) > 0 {
		t.Errorf("leak check: containers left: %v", ids)
	}
	leaks := e.leaks()
	if len(leaks) > 0 {
		t.Errorf("leak check: leaked:\n  %s", strings.Join(leaks, "\n  "))
	}
	if len(ids) == 0 && len(leaks) == 0 {
		return
	}
	for _, id := range ids {
		e.runCtx(ctx, "delete", "--force", id)
	}
	if after, err := testutil.TakeSnapshot(e.scope()); err == nil {
		for _, p := range after.Procs {
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
		for i := len(after.Cgroups) - 1; i >= 0; i-- {
			os.Remove(after.Cgroups[i])
		}
	}
	e.removeCgroupParent()
	mounts, _ := testutil.MountsUnder(e.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// result is one knast invocation's outcome.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("knast %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// command is `knast --root R --storage S args...` with the test's token in its environment.
func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--root", e.root, "--storage", e.storage}, args...)
	cmd := exec.CommandContext(ctx, suite.bin, full...)
	cmd.Env = append(os.Environ(), e.token, suite.token, "HOME="+e.dir, "DOCKER_CONFIG="+filepath.Join(e.dir, "docker"),
		"REGISTRY_AUTH_FILE="+filepath.Join(e.dir, "auth.json"), "XDG_RUNTIME_DIR="+filepath.Join(e.dir, "xdg"))
	cmd.WaitDelay = 5 * time.Second
	// Its own process group: a knast that signals pid 0 (its group) must not take the suite down.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs knast to completion. Output goes through files: a detached container inherits knast's
// stdio, and a pipe would keep the wait open for the container's lifetime.
func (e *env) run(args ...string) result {
	e.t.Helper()
	return e.runCtx(e.ctx, args...)
}

func (e *env) runCtx(ctx context.Context, args ...string) result {
	cmd := e.command(ctx, args...)
	return finish(cmd, args, func() error { return cmd.Run() }, e.dir)
}

// finish runs start (which runs cmd) with stdout and stderr in temp files under dir.
func finish(cmd *exec.Cmd, args []string, start func() error, dir string) result {
	res := result{args: args}
	outF, err1 := os.CreateTemp(dir, "stdout-*")
	errF, err2 := os.CreateTemp(dir, "stderr-*")
	if err := errors.Join(err1, err2); err != nil {
		res.code, res.stderr = -1, err.Error()
		return res
	}
	defer os.Remove(outF.Name())
	defer os.Remove(errF.Name())
	defer outF.Close()
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	err := start()
	res.code = exitCode(err)
	out, _ := os.ReadFile(outF.Name())
	errOut, _ := os.ReadFile(errF.Name())
	res.stdout, res.stderr = string(out), string(errOut)
	return res
}

func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return 128 + int(ws.Signal())
		}
		return ee.ExitCode()
	default:
		return -1
	}
}

// must fails the test unless knast args succeeds, and returns its trimmed stdout.
func (e *env) must(args ...string) string {
	e.t.Helper()
	r := e.run(args...)
	if r.code != 0 {
		e.t.Fatalf("%s", r)
	}
	return strings.TrimSpace(r.stdout)
}

// bundle makes a busybox bundle whose process runs `sh -c script`, no terminal, writable root, with
// the test's token in its environment, then applies edits.
func (e *env) bundle(script string, edits ...func(*specs.Spec)) string {
	e.t.Helper()
	return testutil.Bundle(e.t, suite.bin, func(s *specs.Spec) {
		s.Process.Terminal = false
		s.Process.Args = []string{"sh", "-c", script}
		s.Process.Env = append(s.Process.Env, e.token, suite.token)
		s.Root.Readonly = false
		for _, ed := range edits {
			ed(s)
		}
	})
}

// cgroupDirs lists the directories of the root's cgroup parent on every hierarchy (the leak
// snapshot's view), for tests that check a container's cgroup appeared or went away.
func (e *env) cgroupDirs() []string {
	e.t.Helper()
	s, err := testutil.TakeSnapshot(testutil.Scope{Cgroups: []string{testutil.KnastCgroupParent(e.root)}})
	if err != nil {
		e.t.Fatal(err)
	}
	return s.Cgroups
}
