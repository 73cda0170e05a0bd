//go:build unix

package console

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// maxNameLen is the data buffer go-runc's console socket reads the name into;
// a name this long or longer is rejected there.
const maxNameLen = 4096

// SetSize sets the window size of the terminal f (a pty master or slave).
func SetSize(f *os.File, rows, cols uint16) error {
	err := control(f, func(fd int) error {
		return unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols})
	})
	if err != nil {
		return fmt.Errorf("set size of %s: %w", f.Name(), err)
	}
	return nil
}

// control runs fn with f's descriptor without switching f to blocking mode
// (as f.Fd would).
func control(f *os.File, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = fn(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// masterName is the data sent along with the descriptor: go-runc names the
// received file after it.
func masterName(master *os.File) ([]byte, error) {
	name := master.Name()
	if name == "" {
		name = "/dev/ptmx"
	}
	if len(name) >= maxNameLen {
		return nil, fmt.Errorf("pty master name is %d bytes long", len(name))
	}
	return []byte(name), nil
}

// SendMaster connects to the unix stream socket at socketPath and sends master
// in one message: its name as data and its descriptor as SCM_RIGHTS, the
// format runc's --console-socket receivers (go-runc, conmon) expect.
func SendMaster(socketPath string, master *os.File) error {
	name, err := masterName(master)
	if err != nil {
		return err
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: socketPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("connect to console socket: %w", err)
	}
	defer conn.Close()
	err = control(master, func(fd int) error {
		n, oobn, err := conn.WriteMsgUnix(name, unix.UnixRights(fd), nil)
		if err != nil {
			return err
		}
		if n != len(name) || oobn == 0 {
			return fmt.Errorf("short write (%d of %d bytes)", n, len(name))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("send pty master to %s: %w", socketPath, err)
	}
	return nil
}

// SendMasterConn sends master like SendMaster, on conn, an already connected
// unix socket (the container init inherits the console socket as a
// descriptor).
func SendMasterConn(conn *os.File, master *os.File) error {
	name, err := masterName(master)
	if err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("send pty master: %w", err)
	}
	var serr error
	err = control(master, func(mfd int) error {
		oob := unix.UnixRights(mfd)
		return rc.Write(func(fd uintptr) bool {
			var n int
			n, serr = unix.SendmsgN(int(fd), name, oob, nil, 0)
			if serr == unix.EAGAIN {
				return false
			}
			if serr == nil && n != len(name) {
				serr = fmt.Errorf("short write (%d of %d bytes)", n, len(name))
			}
			return true
		})
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("send pty master on %s: %w", conn.Name(), err)
	}
	return nil
}

// Socket is a console socket: a listening unix socket that receives one pty
// master per connection.
type Socket struct {
	l    *net.UnixListener
	path string
}

// NewSocket listens on a unix stream socket at path.
func NewSocket(path string) (*Socket, error) {
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on console socket: %w", err)
	}
	return &Socket{l: l, path: path}, nil
}

// Path returns the socket's path.
func (s *Socket) Path() string { return s.path }

// ReceiveMaster accepts one connection and returns the pty master sent on it.
func (s *Socket) ReceiveMaster(ctx context.Context) (*os.File, error) {
	if err := s.l.SetDeadline(time.Time{}); err != nil {
		return nil, fmt.Errorf("receive pty master: %w", err)
	}
	stop := interruptOnDone(ctx, s.l.SetDeadline)
	conn, err := s.l.AcceptUnix()
	stop()
	if err != nil {
		return nil, fmt.Errorf("accept on %s: %w", s.path, ctxErr(ctx, err))
	}
	defer conn.Close()
	stop = interruptOnDone(ctx, conn.SetDeadline)
	defer stop()
	f, err := recvMaster(conn)
	if err != nil {
		return nil, fmt.Errorf("receive pty master on %s: %w", s.path, ctxErr(ctx, err))
	}
	return f, nil
}

// Close stops listening and removes the socket file.
func (s *Socket) Close() error {
	err := s.l.Close()
	if rerr := os.Remove(s.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}

// interruptOnDone makes blocked I/O return when ctx ends by setting a past
// deadline. The returned stop must be called; after it returns the deadline
// is no longer touched.
func interruptOnDone(ctx context.Context, setDeadline func(time.Time) error) (stop func()) {
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		select {
		case <-ctx.Done():
			_ = setDeadline(time.Unix(1, 0))
		case <-done:
		}
	}()
	return func() {
		close(done)
		<-exited
	}
}

// ctxErr prefers the context's error over the deadline error it caused.
func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		return cerr
	}
	return err
}

// recvMaster reads one message carrying exactly one descriptor.
func recvMaster(conn *net.UnixConn) (*os.File, error) {
	name := make([]byte, maxNameLen)
	// Room for a few descriptors so that extra ones are seen and closed.
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, flags, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		return nil, err
	}
	var fds []int
	if oobn > 0 {
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, fmt.Errorf("parse control message: %w", err)
		}
		for i := range msgs {
			got, err := unix.ParseUnixRights(&msgs[i])
			if err != nil {
				closeAll(fds)
				return nil, fmt.Errorf("parse control message: %w", err)
			}
			fds = append(fds, got...)
		}
	}
	switch {
	case flags&unix.MSG_CTRUNC != 0:
		closeAll(fds)
		return nil, errors.New("control message truncated")
	case len(fds) != 1:
		closeAll(fds)
		return nil, fmt.Errorf("got %d descriptors, want 1", len(fds))
	}
	s := string(name[:n])
	if s == "" {
		s = "/dev/ptmx"
	}
	return os.NewFile(uintptr(fds[0]), s), nil
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// Proxy copies stdin to master and master to stdout until the container side
// of the pty is gone (read on the master gives EIO or EOF) or ctx ends. A
// terminal stdin is put into raw mode for the duration and its size changes
// (SIGWINCH) are forwarded to the pty. The stdin copier may stay blocked in a
// read of stdin after Proxy returns; it stops at its next read. The slave must
// have been opened before Proxy is called (an unopened pty reads as EIO).
func Proxy(ctx context.Context, master *os.File, stdin *os.File, stdout io.Writer) error {
	m, restoreMaster, err := pollable(master)
	if err != nil {
		return fmt.Errorf("proxy pty: %w", err)
	}
	defer restoreMaster()
	defer m.Close()

	if stdin != nil {
		if state, err := getTermios(stdin); err == nil {
			if err := setRaw(stdin, state); err != nil {
				return fmt.Errorf("set %s raw: %w", stdin.Name(), err)
			}
			defer func() { _ = setTermios(stdin, state) }()
			stopWinch := forwardSize(stdin, m)
			defer stopWinch()
		}
		go func() {
			// Hide ReadFrom/WriteTo: splice into a pty is not wanted here.
			_, _ = io.Copy(struct{ io.Writer }{m}, struct{ io.Reader }{stdin})
		}()
	}

	outErr := make(chan error, 1)
	go func() { outErr <- copyOut(stdout, m) }()
	select {
	case err := <-outErr:
		return err
	case <-ctx.Done():
		_ = m.SetReadDeadline(time.Unix(1, 0))
		<-outErr
		return ctx.Err()
	}
}

// pollable returns a non-blocking duplicate of master registered with the
// runtime poller, so that reads can be interrupted by a deadline, and a
// function restoring master's blocking mode (the mode is shared by both).
func pollable(master *os.File) (*os.File, func(), error) {
	var nfd, flags int
	err := control(master, func(fd int) error {
		var err error
		if flags, err = unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0); err != nil {
			return err
		}
		nfd, err = unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return nil, nil, fmt.Errorf("duplicate %s: %w", master.Name(), err)
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return nil, nil, fmt.Errorf("set %s non-blocking: %w", master.Name(), err)
	}
	restore := func() {
		if flags&unix.O_NONBLOCK == 0 {
			_ = control(master, func(fd int) error { return unix.SetNonblock(fd, false) })
		}
	}
	return os.NewFile(uintptr(nfd), master.Name()), restore, nil
}

// copyOut copies m to out; EIO and EOF are how a pty master reports that the
// last slave descriptor was closed.
func copyOut(out io.Writer, m *os.File) error {
	buf := make([]byte, 32*1024)
	for {
		n, err := m.Read(buf)
		if n > 0 {
			if _, werr := out.Write(buf[:n]); werr != nil {
				return fmt.Errorf("write pty output: %w", werr)
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, syscall.EIO):
			return nil
		default:
			return fmt.Errorf("read pty output: %w", err)
		}
	}
}

func getTermios(f *os.File) (*unix.Termios, error) {
	var t *unix.Termios
	err := control(f, func(fd int) error {
		var err error
		t, err = unix.IoctlGetTermios(fd, ioctlGetTermios)
		return err
	})
	return t, err
}

func setTermios(f *os.File, t *unix.Termios) error {
	return control(f, func(fd int) error { return unix.IoctlSetTermios(fd, ioctlSetTermios, t) })
}

// setRaw applies cfmakeraw(3) to a copy of state.
func setRaw(f *os.File, state *unix.Termios) error {
	raw := *state
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	return setTermios(f, &raw)
}

// copySize gives the pty the window size of the terminal from.
func copySize(from, pty *os.File) error {
	var ws *unix.Winsize
	err := control(from, func(fd int) error {
		var err error
		ws, err = unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ)
		return err
	})
	if err != nil {
		return err
	}
	return SetSize(pty, ws.Row, ws.Col)
}

// forwardSize copies the terminal's size to the pty now and on every SIGWINCH
// until stop is called.
func forwardSize(term, pty *os.File) (stop func()) {
	_ = copySize(term, pty)
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, unix.SIGWINCH)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		for {
			select {
			case <-winch:
				_ = copySize(term, pty)
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(winch)
		close(done)
		<-exited
	}
}
