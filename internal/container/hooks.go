package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

const (
	// hookOutputMax caps how much of a hook's output is kept for its error.
	hookOutputMax = 4096
	// hookWaitDelay bounds the wait for a hook's output after it exited or
	// was killed: a daemon it left behind may hold the pipes open.
	hookWaitDelay = time.Second
)

// RunHooks runs hooks in order, each with exactly its own args and env, the
// state as JSON on stdin and its timeout (kill, then error). It stops at the
// first failure; the error names the kind, index, path, exit status and
// the hook's output.
func RunHooks(ctx context.Context, kind string, hooks []specs.Hook, state *specs.State) error {
	if len(hooks) == 0 {
		return nil
	}
	data, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("%s hooks: encode state: %w", kind, err)
	}
	for i, h := range hooks {
		if err := hookRun(ctx, h, data); err != nil {
			return fmt.Errorf("%s hook #%d (%s): %w", kind, i, h.Path, err)
		}
	}
	return nil
}

func hookRun(ctx context.Context, h specs.Hook, state []byte) error {
	if h.Path == "" {
		return errors.New("empty path")
	}
	var timeout time.Duration
	if h.Timeout != nil {
		if *h.Timeout <= 0 {
			return fmt.Errorf("timeout %d: must be positive", *h.Timeout)
		}
		timeout = time.Duration(*h.Timeout) * time.Second
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	stdout := &hookBuffer{}
	stderr := &hookBuffer{}
	cmd := &exec.Cmd{
		Path:   h.Path,
		Args:   h.Args,
		Env:    h.Env,
		Stdin:  bytes.NewReader(state),
		Stdout: stdout,
		Stderr: stderr,
		// A process group, so that the kill reaches what the hook started.
		SysProcAttr: &syscall.SysProcAttr{Setpgid: true},
		WaitDelay:   hookWaitDelay,
	}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{h.Path}
	}
	if cmd.Env == nil {
		cmd.Env = []string{} // nil would mean knast's own environment
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var err error
	select {
	case err = <-waited:
	case <-ctx.Done():
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = <-waited
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && timeout > 0 {
			return fmt.Errorf("killed after timeout of %v%s", timeout, hookOutput(stdout, stderr))
		}
		return fmt.Errorf("killed: %w%s", ctx.Err(), hookOutput(stdout, stderr))
	}
	// ErrWaitDelay alone means the hook succeeded but left its output open.
	if err != nil && !errors.Is(err, exec.ErrWaitDelay) {
		return fmt.Errorf("%w%s", err, hookOutput(stdout, stderr))
	}
	return nil
}

// hookOutput formats what a failed hook printed, stderr first.
func hookOutput(stdout, stderr *hookBuffer) string {
	var b strings.Builder
	for _, o := range []struct {
		name string
		buf  *hookBuffer
	}{{"stderr", stderr}, {"stdout", stdout}} {
		if s := o.buf.String(); s != "" {
			fmt.Fprintf(&b, ", %s: %q", o.name, s)
		}
	}
	return b.String()
}

// hookBuffer keeps the first hookOutputMax bytes written to it and discards
// the rest, so a chatty hook cannot grow knast's memory.
type hookBuffer struct {
	b         bytes.Buffer
	truncated bool
}

func (h *hookBuffer) Write(p []byte) (int, error) {
	if room := hookOutputMax - h.b.Len(); room < len(p) {
		h.b.Write(p[:max(room, 0)])
		h.truncated = true
		return len(p), nil
	}
	return h.b.Write(p)
}

func (h *hookBuffer) String() string {
	s := strings.TrimSpace(h.b.String())
	if h.truncated {
		s += " [truncated]"
	}
	return s
}
