//go:build linux

package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// receiveMaster accepts one connection on l and returns the fd sent with SCM_RIGHTS.
func receiveMaster(ctx context.Context, l *net.UnixListener) (*os.File, error) {
	if dl, ok := ctx.Deadline(); ok {
		l.SetDeadline(dl)
	}
	c, err := l.AcceptUnix()
	if err != nil {
		return nil, fmt.Errorf("accept: %w", err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*4))
	_, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, fmt.Errorf("recvmsg: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, fmt.Errorf("control message: %w", err)
	}
	var fds []int
	for i := range msgs {
		got, err := unix.ParseUnixRights(&msgs[i])
		if err == nil {
			fds = append(fds, got...)
		}
	}
	if len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return nil, fmt.Errorf("received %d fds, want 1", len(fds))
	}
	// Non-blocking, so the runtime poller honours read deadlines.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return nil, err
	}
	return os.NewFile(uintptr(fds[0]), "pty-master"), nil
}

func TestConsoleSocket(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
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

	b := e.bundle("", func(s *specs.Spec) {
		s.Process.Terminal = true
		s.Process.Args = []string{"sh"}
	})
	e.mustKnast("create", "--bundle", b, "--console-socket", sock, "ctr")
	rc := <-got
	if rc.err != nil {
		t.Fatalf("receiving the pty master: %v", rc.err)
	}
	master := rc.f
	defer master.Close()
	if _, err := unix.IoctlGetTermios(int(master.Fd()), unix.TCGETS); err != nil {
		t.Errorf("received fd is not a terminal: %v", err)
	}
	e.mustKnast("start", "ctr")
	// The echoed command line holds "x$((6*7))y", not "x42y": only the shell's output matches.
	if _, err := master.WriteString("[ -t 0 ] && echo tty$((1+1))ok; echo x$((6*7))y; exit\n"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	buf := make([]byte, 1024)
	master.SetReadDeadline(time.Now().Add(20 * time.Second))
	for !strings.Contains(out.String(), "x42y") {
		n, err := master.Read(buf)
		out.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, unix.EIO) {
				t.Errorf("reading the pty: %v", err)
			}
			break
		}
	}
	if !strings.Contains(out.String(), "x42y") || !strings.Contains(out.String(), "tty2ok") {
		t.Errorf("pty output %q, want tty2ok (stdin is a tty) and x42y", out.String())
	}
	e.waitStatus("ctr", "stopped")
	e.mustKnast("delete", "ctr")
}
