//go:build linux

package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

// knastBin is the binary built once by TestMain; suiteToken marks every process the suite starts.
var (
	knastBin   string
	suiteToken string
)

// testTimeout bounds one test, so a hung container cannot hang CI.
const testTimeout = 90 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration tests: they need root (namespaces, mounts)")
		return 0
	}
	dir, err := os.MkdirTemp("", "knast-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Every test's t.TempDir lives under dir, so the suite-wide leak check can scope mounts to it.
	os.Setenv("TMPDIR", dir)
	if knastBin, err = buildKnast(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suiteToken = fmt.Sprintf("KNAST_ITEST_SUITE=%d", os.Getpid())
	before, err := testutil.TakeSnapshot(testutil.Scope{Paths: []string{dir}, Token: suiteToken})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if leaks := before.WaitLeaks(5 * time.Second); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "integration suite leaked:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	return code
}

// buildKnast builds cmd/knast into dir, or, when $KNAST_ITEST_RUNTIME names another runtime binary
// (runc, crun), uses that instead, so the suite can show which failures are knast's.
func buildKnast(dir string) (string, error) {
	if rt := os.Getenv("KNAST_ITEST_RUNTIME"); rt != "" {
		return exec.LookPath(rt)
	}
	return testutil.BuildKnast(context.Background(), dir)
}

// env is one test's private knast world: its own --root, a token in the environment of every process
// it starts, and a leak snapshot checked when the test ends.
type env struct {
	t      *testing.T
	ctx    context.Context
	root   string
	token  string
	before testutil.Snapshot
	// inits are the container processes seen by this test; the container init's environment is
	// knast's own, not the spec's, so the token cannot find it, and these must be gone at the end.
	inits []testutil.Proc
}

// newEnv prepares a test; callers that are safe in parallel call t.Parallel() first.
func newEnv(t *testing.T) *env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	t.Cleanup(cancel)
	base := t.TempDir()
	e := &env{
		t:     t,
		ctx:   ctx,
		root:  filepath.Join(base, "root"),
		token: "KNAST_ITEST=" + strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()),
	}
	if err := os.Mkdir(e.root, 0o700); err != nil {
		t.Fatal(err)
	}
	var err error
	e.before, err = testutil.TakeSnapshot(testutil.Scope{
		Root:  e.root,
		Paths: []string{filepath.Dir(base)}, // the parent of every t.TempDir of this test
		Token: e.token,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Registered after the first TempDir, so it runs before the temp dirs are removed.
	t.Cleanup(e.checkLeaks)
	return e
}

// checkLeaks fails the test if it left a container, state entry, mount or process behind, then
// cleans up what it can so that one failure does not cascade.
func (e *env) checkLeaks() {
	t := e.t
	defer testutil.RemoveCgroupParent(e.root)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res := e.execCtx(ctx, nil, "list", "-q")
	if res.Code != 0 {
		t.Errorf("leak check: knast list -q: %s", res)
	}
	ids := strings.Fields(res.Stdout)
	if len(ids) > 0 {
		t.Errorf("leak check: containers left: %v", ids)
	}
	leaks := e.before.WaitLeaks(5 * time.Second)
	for _, p := range e.inits {
		if now, ok := testutil.LiveProc(p.Pid); ok && now.Start == p.Start {
			leaks = append(leaks, "container process: "+now.String())
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}
	if len(leaks) > 0 {
		t.Errorf("leak check: leaked:\n  %s", strings.Join(leaks, "\n  "))
	}
	if len(ids) == 0 && len(leaks) == 0 {
		return
	}
	for _, id := range ids {
		e.execCtx(ctx, nil, "delete", "--force", id)
	}
	after, err := testutil.TakeSnapshot(e.before.Scope)
	if err != nil {
		return
	}
	for _, p := range after.Procs {
		syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	mounts, _ := testutil.MountsUnder(filepath.Dir(e.root))
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
}

// result is the outcome of one knast invocation.
type result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
	Err            error // a start or wait error other than a non-zero exit
}

func (r result) String() string {
	return fmt.Sprintf("knast %s: exit %d (err %v)\nstdout: %s\nstderr: %s",
		strings.Join(r.Args, " "), r.Code, r.Err, r.Stdout, r.Stderr)
}

// opts changes how one knast invocation is started.
type opts struct {
	stdin      *os.File
	stdout     *os.File // when set, stdout is not captured in result.Stdout
	extraFiles []*os.File
	env        []string // added to the environment
}

// knast runs `knast --root R args...` and waits for it. Output goes through files, not pipes: a
// detached container inherits knast's stdio, and a pipe would keep the wait open for its lifetime.
func (e *env) knast(args ...string) result {
	e.t.Helper()
	return e.execCtx(e.ctx, nil, args...)
}

func (e *env) knastWith(o *opts, args ...string) result {
	e.t.Helper()
	return e.execCtx(e.ctx, o, args...)
}

// mustKnast is knast that fails the test on a non-zero exit.
func (e *env) mustKnast(args ...string) result {
	e.t.Helper()
	r := e.knast(args...)
	if r.Code != 0 || r.Err != nil {
		e.t.Fatalf("%s", r)
	}
	return r
}

func (e *env) command(ctx context.Context, o *opts, args ...string) (*exec.Cmd, []string) {
	full := append([]string{"--root", e.root}, args...)
	cmd := exec.CommandContext(ctx, knastBin, full...)
	cmd.Env = append(os.Environ(), e.token, suiteToken, "KNAST_ITEST_HOST_ONLY=1")
	cmd.WaitDelay = 5 * time.Second
	if o != nil {
		cmd.Stdin = o.stdin
		cmd.ExtraFiles = o.extraFiles
		cmd.Env = append(cmd.Env, o.env...)
	}
	return cmd, full
}

func (e *env) execCtx(ctx context.Context, o *opts, args ...string) result {
	cmd, full := e.command(ctx, o, args...)
	res := result{Args: full}
	outF, err := os.CreateTemp(e.root+"/..", "stdout-*")
	if err != nil {
		res.Err = err
		return res
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(e.root+"/..", "stderr-*")
	if err != nil {
		res.Err = err
		return res
	}
	defer os.Remove(errF.Name())
	defer errF.Close()
	cmd.Stdout, cmd.Stderr = outF, errF
	if o != nil && o.stdout != nil {
		cmd.Stdout = o.stdout
	}
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.Code = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			res.Code = 128 + int(ws.Signal())
		}
	case err != nil:
		res.Err = err
		res.Code = -1
	}
	out, _ := os.ReadFile(outF.Name())
	errOut, _ := os.ReadFile(errF.Name())
	res.Stdout, res.Stderr = string(out), string(errOut)
	if res.Code == 0 && len(args) > 1 && (args[0] == "create" || args[0] == "run" && slices.Contains(args, "-d")) {
		e.trackID(ctx, args[len(args)-1])
	}
	return res
}

// trackID records the init of a container that create or run -d just made.
func (e *env) trackID(ctx context.Context, id string) {
	cmd, _ := e.command(ctx, nil, "state", id)
	out, err := cmd.Output()
	if err != nil {
		return // the failing assertion belongs to the test; this only feeds the leak check
	}
	var st containerState
	if json.Unmarshal(out, &st) == nil {
		e.track(st.Pid)
	}
}

// bundle makes a bundle whose process runs `sh -c script` without a terminal, with the test's token in
// its environment and a writable rootfs (runc's default spec has a read-only root; tests that need it
// set it back), then applies edits.
func (e *env) bundle(script string, edits ...func(*specs.Spec)) string {
	e.t.Helper()
	return testutil.Bundle(e.t, knastBin, func(s *specs.Spec) {
		s.Process.Terminal = false
		s.Process.Args = []string{"sh", "-c", script}
		s.Process.Env = append(s.Process.Env, e.token, suiteToken)
		s.Root.Readonly = false
		for _, ed := range edits {
			ed(s)
		}
	})
}

// runOut runs the bundle's process to completion (`knast run`) and returns its stdout and exit code.
// Like runc, a foreground run removes the container when its process exits.
func (e *env) runOut(id, bundle string) (string, int) {
	e.t.Helper()
	r := e.runResult(id, bundle)
	return r.Stdout, r.Code
}

func (e *env) runResult(id, bundle string) result {
	e.t.Helper()
	r := e.knast("run", "--bundle", bundle, id)
	if r.Err != nil {
		e.t.Fatalf("%s", r)
	}
	if st := e.knast("state", id); st.Code == 0 {
		e.t.Errorf("container %s still exists after a foreground run: %s", id, st.Stdout)
	}
	return r
}

// mustRun is runOut that fails the test unless the process exits 0; it returns trimmed stdout.
func (e *env) mustRun(id, bundle string) string {
	e.t.Helper()
	r := e.runResult(id, bundle)
	if r.Code != 0 {
		e.t.Fatalf("%s", r)
	}
	return strings.TrimSpace(r.Stdout)
}

// containerState is runc's `state` JSON.
type containerState struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations"`
}

func (e *env) state(id string) containerState {
	e.t.Helper()
	r := e.mustKnast("state", id)
	var st containerState
	if err := json.Unmarshal([]byte(r.Stdout), &st); err != nil {
		e.t.Fatalf("state %s: %v: %q", id, err, r.Stdout)
	}
	if r.Stderr != "" {
		e.t.Errorf("state %s: stderr not empty on success: %q", id, r.Stderr)
	}
	e.track(st.Pid)
	return st
}

// track remembers a container process for the leak check.
func (e *env) track(pid int) {
	if pid <= 0 {
		return
	}
	if p, ok := testutil.LiveProc(pid); ok && !slices.ContainsFunc(e.inits, func(q testutil.Proc) bool {
		return q.Pid == p.Pid && q.Start == p.Start
	}) {
		e.inits = append(e.inits, p)
	}
}

// waitStatus polls `knast state` until the container reaches status.
func (e *env) waitStatus(id, status string) containerState {
	e.t.Helper()
	var st containerState
	for {
		st = e.state(id)
		if st.Status == status {
			return st
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("container %s: status %q, want %q: %v", id, st.Status, status, e.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitFile polls until path exists and returns its content.
func (e *env) waitFile(path string) string {
	e.t.Helper()
	for {
		// A shell redirection creates the file before it writes: wait for a whole line.
		b, err := os.ReadFile(path)
		if err == nil && strings.HasSuffix(string(b), "\n") {
			return string(b)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %s: %v", path, e.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitFileContains polls until path contains want and returns its content.
func (e *env) waitFileContains(path, want string) string {
	e.t.Helper()
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("waiting for %q in %s (have %q): %v", want, path, b, e.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// outFile returns an empty file in the test's temp dir, for a detached container's stdout.
func (e *env) outFile() *os.File {
	e.t.Helper()
	f, err := os.CreateTemp(e.t.TempDir(), "ctr-out-*")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

// pidAlive reports whether pid exists and is not a zombie.
func pidAlive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && len(b) > i+2 && b[i+2] != 'Z' && b[i+2] != 'X'
}

// waitPidGone polls until pid is gone.
func (e *env) waitPidGone(pid int) {
	e.t.Helper()
	for pidAlive(pid) {
		select {
		case <-e.ctx.Done():
			e.t.Fatalf("pid %d still alive: %v", pid, e.ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// rootfsPath is the host path of a file in the bundle's rootfs.
func rootfsPath(bundle, p string) string {
	return filepath.Join(bundle, "rootfs", p)
}

func removeNamespace(s *specs.Spec, typ specs.LinuxNamespaceType) {
	ns := s.Linux.Namespaces[:0]
	for _, n := range s.Linux.Namespaces {
		if n.Type != typ {
			ns = append(ns, n)
		}
	}
	s.Linux.Namespaces = ns
}

func hasNamespace(s *specs.Spec, typ specs.LinuxNamespaceType) bool {
	for _, n := range s.Linux.Namespaces {
		if n.Type == typ {
			return true
		}
	}
	return false
}

var lineRe = regexp.MustCompile(`\s+`)

// fields normalises whitespace so output comparisons ignore column alignment.
func fields(s string) string {
	return strings.TrimSpace(lineRe.ReplaceAllString(s, " "))
}
