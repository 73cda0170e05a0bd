//go:build linux

package kube

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knast/knast/internal/testutil"
)

// knastBin is the runtime under test, built once by TestMain.
var knastBin string

// crictlModule is the crictl the test installs when none is on PATH (.ci/run installs the same).
const crictlModule = "sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0"

// cmdTimeout bounds one command, so a hung shim or plugin cannot hang CI.
const cmdTimeout = 60 * time.Second

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping kube tests: they need root (containerd runs pods)")
		return 0
	}
	dir, err := os.MkdirTemp("", "knast-kube-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if knastBin, err = testutil.BuildKnast(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// crictlPath finds crictl on PATH or in GOBIN/GOPATH/bin, and otherwise installs it with `go install`
// into the user cache, where later runs find it.
func crictlPath(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	gopath := strings.TrimSpace(run(t.Context(), nil, "go", "env", "GOPATH").Stdout)
	if gopath != "" {
		if p := filepath.Join(strings.Split(gopath, string(os.PathListSeparator))[0], "bin", "crictl"); isExec(p) {
			return p
		}
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		t.Fatalf("crictl is not installed and there is no cache dir to install it into: %v", err)
	}
	bin := filepath.Join(cache, "knast-test-bin")
	if p := filepath.Join(bin, "crictl"); isExec(p) {
		return p
	}
	t.Logf("crictl is not installed: go install %s", crictlModule)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", crictlModule)
	cmd.Env = append(os.Environ(), "GOBIN="+bin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s: %v\n%s", crictlModule, err, out)
	}
	return filepath.Join(bin, "crictl")
}

func isExec(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// requireTools fails t when a Debian package the test needs is missing: CI installs them.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian packages containerd docker-registry nftables gcc libc6-dev iproute2): %v", tool, err)
		}
	}
}

// result is the outcome of one command.
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

func (r result) ok() bool { return r.Code == 0 && r.Err == nil }

// run runs a command with a timeout and no stdin. Output goes to temp files rather than pipes: a shim
// started on behalf of the command may inherit them and would hold a pipe open for its lifetime.
func run(ctx context.Context, env []string, args ...string) result {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	r := result{Args: args}
	outF, err := os.CreateTemp("", "kube-out-")
	if err != nil {
		r.Err = err
		return r
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp("", "kube-err-")
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
