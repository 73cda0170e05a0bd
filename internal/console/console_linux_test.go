package console

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPair returns a pty master and its opened slave, closed at cleanup.
func newPair(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, slavePath, err := NewPty()
	if err != nil {
		t.Fatalf("NewPty: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	slave, err = os.OpenFile(slavePath, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatalf("open slave %s: %v", slavePath, err)
	}
	t.Cleanup(func() { slave.Close() })
	return master, slave
}

// readUntil reads from r until want has been seen or 5s have passed.
func readUntil(t *testing.T, r io.Reader, want string) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 256)
		for !strings.Contains(b.String(), want) {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, want) {
			t.Fatalf("read %q, want it to contain %q", s, want)
		}
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out reading %q", want)
		return ""
	}
}

func ptyNumber(t *testing.T, f *os.File) uint32 {
	t.Helper()
	var n uint32
	err := control(f, func(fd int) error {
		var err error
		n, err = unix.IoctlGetUint32(fd, unix.TIOCGPTN)
		return err
	})
	if err != nil {
		t.Fatalf("TIOCGPTN on %s: %v", f.Name(), err)
	}
	return n
}

func TestNewPty(t *testing.T) {
	master, slavePath, err := NewPty()
	if err != nil {
		t.Fatalf("NewPty: %v", err)
	}
	defer master.Close()
	if want := "/dev/pts/" + strconv.FormatUint(uint64(ptyNumber(t, master)), 10); slavePath != want {
		t.Errorf("slave path = %q, want %q", slavePath, want)
	}
	flags, err := unix.FcntlInt(master.Fd(), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Errorf("master is not close-on-exec (flags %#x, err %v)", flags, err)
	}

	tests := []struct {
		name     string
		from, to func(m, s *os.File) *os.File
		write    string
		want     string
	}{
		// The slave's line discipline turns \n into \r\n on output (ONLCR).
		{"slave to master", func(m, s *os.File) *os.File { return s }, func(m, s *os.File) *os.File { return m }, "hello\n", "hello\r\n"},
		{"master to slave", func(m, s *os.File) *os.File { return m }, func(m, s *os.File) *os.File { return s }, "line\n", "line\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, s := newPair(t)
			if _, err := tt.from(m, s).Write([]byte(tt.write)); err != nil {
				t.Fatalf("write: %v", err)
			}
			readUntil(t, tt.to(m, s), tt.want)
		})
	}
}

func TestSetSize(t *testing.T) {
	master, slave := newPair(t)
	for _, sz := range [][2]uint16{{24, 80}, {50, 132}, {1, 1}} {
		if err := SetSize(master, sz[0], sz[1]); err != nil {
			t.Fatalf("SetSize(%v): %v", sz, err)
		}
		ws, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatalf("TIOCGWINSZ: %v", err)
		}
		if ws.Row != sz[0] || ws.Col != sz[1] {
			t.Errorf("size = %dx%d, want %dx%d", ws.Row, ws.Col, sz[0], sz[1])
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if err := SetSize(r, 1, 1); err == nil {
		t.Error("SetSize on a pipe succeeded")
	}
}

// dialFile returns a connected unix socket as an *os.File, as the container
// init inherits it.
func dialFile(t *testing.T, path string) *os.File {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		unix.Close(fd)
		t.Fatalf("connect %s: %v", path, err)
	}
	return os.NewFile(uintptr(fd), "console-socket")
}

func TestSendReceiveMaster(t *testing.T) {
	tests := []struct {
		name string
		send func(t *testing.T, path string, master *os.File) error
	}{
		{"SendMaster", func(t *testing.T, path string, master *os.File) error {
			return SendMaster(path, master)
		}},
		{"SendMasterConn", func(t *testing.T, path string, master *os.File) error {
			conn := dialFile(t, path)
			defer conn.Close()
			return SendMasterConn(conn, master)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "console.sock")
			sock, err := NewSocket(path)
			if err != nil {
				t.Fatalf("NewSocket: %v", err)
			}
			master, slave := newPair(t)
			sent := make(chan error, 1)
			go func() { sent <- tt.send(t, path, master) }()

			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			got, err := sock.ReceiveMaster(ctx)
			if err != nil {
				t.Fatalf("ReceiveMaster: %v", err)
			}
			defer got.Close()
			if err := <-sent; err != nil {
				t.Fatalf("send: %v", err)
			}
			if got.Name() != "/dev/ptmx" {
				t.Errorf("received name %q, want /dev/ptmx", got.Name())
			}
			if a, b := ptyNumber(t, got), ptyNumber(t, master); a != b {
				t.Errorf("received pty %d, sent pty %d", a, b)
			}
			if _, err := slave.Write([]byte("via socket\n")); err != nil {
				t.Fatal(err)
			}
			readUntil(t, got, "via socket\r\n")

			if err := sock.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket file still there after Close: %v", err)
			}
		})
	}
}

func TestReceiveMasterErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "console.sock")
	sock, err := NewSocket(path)
	if err != nil {
		t.Fatalf("NewSocket: %v", err)
	}
	defer sock.Close()

	// Cancelled while waiting for a connection.
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if _, err := sock.ReceiveMaster(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("ReceiveMaster after cancel = %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("cancel took %v", d)
	}

	tests := []struct {
		name    string
		send    func(c *net.UnixConn) error
		wantErr string
	}{
		{"data without descriptor", func(c *net.UnixConn) error {
			_, err := c.Write([]byte("/dev/ptmx"))
			return err
		}, "got 0 descriptors"},
		{"two descriptors", func(c *net.UnixConn) error {
			_, _, err := c.WriteMsgUnix([]byte("x"), unix.UnixRights(0, 1), nil)
			return err
		}, "got 2 descriptors"},
		{"hang up", func(c *net.UnixConn) error { return nil }, "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A fresh context must work after the earlier cancel.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
				if err != nil {
					t.Errorf("dial: %v", err)
					return
				}
				defer c.Close()
				if err := tt.send(c); err != nil {
					t.Errorf("send: %v", err)
				}
			}()
			f, err := sock.ReceiveMaster(ctx)
			wg.Wait()
			if err == nil {
				f.Close()
				t.Fatal("ReceiveMaster succeeded")
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for Proxy's writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func blocking(t *testing.T, f *os.File) bool {
	t.Helper()
	var flags int
	if err := control(f, func(fd int) error {
		var err error
		flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return flags&unix.O_NONBLOCK == 0
}

func TestProxy(t *testing.T) {
	master, slave := newPair(t)
	// Raw slave: no echo, no line editing, so both directions are exact.
	state, err := getTermios(slave)
	if err != nil {
		t.Fatal(err)
	}
	if err := setRaw(slave, state); err != nil {
		t.Fatal(err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer inW.Close()
	var out syncBuffer

	done := make(chan error, 1)
	go func() { done <- Proxy(context.Background(), master, inR, &out) }()

	if _, err := inW.Write([]byte("to the container")); err != nil {
		t.Fatal(err)
	}
	readUntil(t, slave, "to the container")
	if _, err := slave.Write([]byte("from the container")); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Proxy = %v, want nil after the slave closed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Proxy did not return after the slave closed")
	}
	if got := out.String(); got != "from the container" {
		t.Errorf("stdout got %q", got)
	}
	if !blocking(t, master) {
		t.Error("master left non-blocking")
	}
}

func TestProxyCancel(t *testing.T) {
	master, _ := newPair(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Proxy(ctx, master, nil, io.Discard) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Proxy = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Proxy ignored cancel")
	}
	if !blocking(t, master) {
		t.Error("master left non-blocking")
	}
}

// TestProxyTerminal uses a second pty's slave as a terminal stdin: it must be
// raw during Proxy and restored after, and its size must follow SIGWINCH.
func TestProxyTerminal(t *testing.T) {
	master, slave := newPair(t)
	_, term := newPair(t)
	if err := SetSize(term, 30, 90); err != nil {
		t.Fatal(err)
	}
	before, err := getTermios(term)
	if err != nil {
		t.Fatal(err)
	}
	if before.Lflag&unix.ICANON == 0 {
		t.Fatal("terminal starts without ICANON")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Proxy(ctx, master, term, io.Discard) }()

	size := func() (uint16, uint16) {
		ws, err := unix.IoctlGetWinsize(int(slave.Fd()), unix.TIOCGWINSZ)
		if err != nil {
			t.Fatal(err)
		}
		return ws.Row, ws.Col
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
		}
	}
	waitFor("initial size", func() bool { r, c := size(); return r == 30 && c == 90 })
	waitFor("raw mode", func() bool {
		st, err := getTermios(term)
		return err == nil && st.Lflag&(unix.ICANON|unix.ECHO) == 0
	})
	if err := SetSize(term, 45, 120); err != nil {
		t.Fatal(err)
	}
	if err := unix.Kill(os.Getpid(), unix.SIGWINCH); err != nil {
		t.Fatal(err)
	}
	waitFor("resize", func() bool { r, c := size(); return r == 45 && c == 120 })

	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Proxy = %v, want context.Canceled", err)
	}
	after, err := getTermios(term)
	if err != nil {
		t.Fatal(err)
	}
	if after.Lflag != before.Lflag || after.Iflag != before.Iflag || after.Oflag != before.Oflag {
		t.Errorf("termios not restored: before %+v, after %+v", before, after)
	}
}
