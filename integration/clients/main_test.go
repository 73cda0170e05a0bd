//go:build linux

package clients

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/knast/knast/internal/console"
	"github.com/knast/knast/internal/testutil"
)

// runtimeBin is the OCI runtime the clients are told to use: knast built by TestMain, or the binary
// named by $KNAST_CLIENT_RUNTIME (e.g. /usr/sbin/runc), which shows whether a failure is knast's.
var runtimeBin string

// cmdTimeout bounds one client command, so a hung shim or conmon cannot hang CI.
const cmdTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping client tests: they need root (containerd and podman run containers)")
		return 0
	}
	dir, err := os.MkdirTemp("", "knast-clients-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if runtimeBin, err = buildRuntime(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("client tests: runtime %s\n", runtimeBin)
	// containerd's and podman's dirs are made beside dir (their socket paths must stay short).
	return testutil.CheckSuite("clients integration", testutil.Scope{Paths: []string{os.TempDir()}}, m.Run)
}

// buildRuntime builds cmd/knast into dir unless $KNAST_CLIENT_RUNTIME names another runtime.
func buildRuntime(dir string) (string, error) {
	if rt := os.Getenv("KNAST_CLIENT_RUNTIME"); rt != "" {
		p, err := exec.LookPath(rt)
		if err != nil {
			return "", fmt.Errorf("KNAST_CLIENT_RUNTIME: %w", err)
		}
		return filepath.Abs(p)
	}
	return testutil.BuildKnast(context.Background(), dir)
}

// requireTools skips t when a client is not installed (CI installs them with apt).
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: %s is not installed (apt-get install containerd podman): %v", tool, err)
		}
	}
}

// result is the outcome of one client command.
type result struct {
	Args           []string
	Stdout, Stderr string
	Code           int
	Err            error // a start or wait error other than a non-zero exit
}

func (r result) String() string {
	return fmt.Sprintf("%s: exit %d (err %v)\nstdout: %s\nstderr: %s",
		strings.Join(r.Args, " "), r.Code, r.Err, r.Stdout, r.Stderr)
}

// run runs a command with a timeout and no stdin. Output goes to temp files rather than pipes: a
// detached container or shim may inherit them and would keep a pipe open for its lifetime.
func run(ctx context.Context, env []string, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	r := result{Args: args}
	outF, err := os.CreateTemp("", "client-out-")
	if err != nil {
		r.Err = err
		return r
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp("", "client-err-")
	if err != nil {
		r.Err = err
		return r
	}
	defer os.Remove(errF.Name())
	defer errF.Close()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	stdout, _ := os.ReadFile(outF.Name())
	stderr, _ := os.ReadFile(errF.Name())
	r.Stdout, r.Stderr = string(stdout), string(stderr)
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		r.Code = ee.ExitCode()
	case err != nil:
		r.Code = -1
		r.Err = err
	}
	return r
}

// ptyResult is what a command under a pty printed and how it exited.
type ptyResult struct {
	Output string
	Code   int
	Err    error
}

// ptySession runs a command as a session leader with a new pty as its controlling terminal and
// stdio, like a user at a terminal: the clients' -t paths insist on a terminal on stdin.
type ptySession struct {
	t      *testing.T
	master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	out    bytes.Buffer
	done   chan struct{} // closed when the output reader stops
}

func startPty(t *testing.T, ctx context.Context, env []string, args ...string) *ptySession {
	t.Helper()
	master, slavePath, err := console.NewPty()
	if err != nil {
		t.Fatalf("new pty: %v", err)
	}
	if err := console.SetSize(master, 24, 80); err != nil {
		t.Fatalf("pty size: %v", err)
	}
	slave, err := os.OpenFile(slavePath, os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		t.Fatalf("open %s: %v", slavePath, err)
	}
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), append([]string{"TERM=dumb"}, env...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		slave.Close()
		master.Close()
		t.Fatalf("start %v: %v", args, err)
	}
	// Only the child holds the slave now, so reads on the master end (EIO) once it is gone.
	slave.Close()
	s := &ptySession{t: t, master: master, cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			s.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		master.Close()
	})
	return s
}

func (s *ptySession) output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// waitFor waits until the output contains want; false on timeout.
func (s *ptySession) waitFor(want string, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(s.output(), want) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func (s *ptySession) write(text string) {
	s.t.Helper()
	if _, err := io.WriteString(s.master, text); err != nil {
		s.t.Fatalf("write to pty: %v", err)
	}
}

// wait waits for the command to exit and for its output to drain.
func (s *ptySession) wait() ptyResult {
	err := s.cmd.Wait()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
	}
	r := ptyResult{Output: s.output()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	case err != nil:
		r.Code, r.Err = -1, err
	}
	return r
}

// busyboxImage writes a busybox-static rootfs into dir/rootfs and returns its path.
func busyboxImage(t *testing.T, dir string) string {
	t.Helper()
	rootfs := filepath.Join(dir, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	return rootfs
}

// readRuntimeLogs returns the contents of every file named name under dir, for failure reports.
func readRuntimeLogs(dir, name string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != name {
			return nil
		}
		data, err := os.ReadFile(p)
		if err == nil && len(data) > 0 {
			fmt.Fprintf(&b, "== %s\n%s\n", p, data)
		}
		return nil
	})
	return b.String()
}

// eventually polls check until it returns "" or timeout passes; it returns the last complaint.
func eventually(timeout time.Duration, check func() string) string {
	deadline := time.Now().Add(timeout)
	for {
		msg := check()
		if msg == "" || time.Now().After(deadline) {
			return msg
		}
		time.Sleep(100 * time.Millisecond)
	}
}
