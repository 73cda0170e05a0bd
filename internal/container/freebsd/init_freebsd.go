//go:build freebsd

package freebsd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/console"
)

// HookRunner runs one kind of hooks with the container state on their stdin.
type HookRunner func(ctx context.Context, kind string, hooks []specs.Hook, state *specs.State) error

// procctl(2), <sys/procctl.h>: PROC_NO_NEW_PRIVS_CTL (FreeBSD 14.0+) on P_PID.
const (
	procNoNewPrivsCtl    = 19
	procNoNewPrivsEnable = 1
	pPid                 = 0
	closeRangeCloexec    = 1 << 2 // CLOSE_RANGE_CLOEXEC, <sys/unistd.h>
)

// Init is the body of `knast init` on FreeBSD: a re-exec of knast that first attaches itself to the
// container's jail, then sets up the process the parent sends and, for a container, waits on the exec
// fifo until `knast start`. It never returns on success; on failure the parent is told why.
func Init(ctx context.Context, runHooks HookRunner) error {
	jid, err := envInt(EnvJail)
	if err != nil {
		return err
	}
	// Before anything else: from here on the init sees only the jail.
	if err := AttachJail(jid); err != nil {
		return err
	}
	fd, err := envInt(EnvSync)
	if err != nil {
		return err
	}
	unix.CloseOnExec(fd)
	sync := os.NewFile(uintptr(fd), "sync")
	defer sync.Close()
	// The state dir comes over the socket now that the jail is entered: jail_attach refuses to run with
	// a directory open when knast itself runs in a jail.
	dirFd, err := recvFd(fd)
	if err != nil {
		return err
	}
	conn := NewConn(sync)
	m, err := conn.Expect(MsgConfig)
	if err == nil && (m.Config == nil || m.Config.Process == nil) {
		err = errors.New("init: config message without a process")
	}
	if err == nil {
		err = initProcess(ctx, m.Config, conn, sync, dirFd, runHooks)
	}
	// Only reached on failure. If the parent is gone there is no one to tell.
	_ = conn.Send(Message{Type: MsgError, Error: err.Error()})
	return err
}

func envInt(key string) (int, error) {
	v, ok := os.LookupEnv(key)
	if !ok {
		return 0, fmt.Errorf("init: $%s is not set (not started by knast)", key)
	}
	os.Unsetenv(key)
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("init: bad $%s %q", key, v)
	}
	return n, nil
}

// recvFd reads the parent's first message on the sync socket: one byte, with the state dir's fd for a
// create and none for an exec (-1).
func recvFd(sock int) (int, error) {
	buf := make([]byte, 1)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("init: receive state dir: %w", err)
	}
	if oobn == 0 {
		return -1, nil
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("init: receive state dir: bad control message")
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("init: receive state dir: bad rights")
	}
	return fds[0], nil
}

func initProcess(ctx context.Context, c *InitConfig, conn *Conn, sync *os.File, dirFd int, runHooks HookRunner) error {
	p := c.Process
	if err := cloexecFrom(3 + c.PreserveFds); err != nil {
		return err
	}
	if p.Terminal {
		if err := initConsole(c.ConsoleFd, p.ConsoleSize); err != nil {
			return err
		}
	}
	for _, rl := range p.Rlimits {
		res, err := Rlimit(rl.Type)
		if err != nil {
			return err
		}
		if err := unix.Setrlimit(res, &unix.Rlimit{Cur: int64(rl.Soft), Max: int64(rl.Hard)}); err != nil {
			return fmt.Errorf("process.rlimits %s: %w", rl.Type, err)
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	if !c.Exec {
		// The root is the jail's: MkdirAll cannot leave it, even through symlinks.
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return fmt.Errorf("process.cwd: %w", err)
		}
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("process.cwd: chdir %s: %w", cwd, err)
	}
	argv0, err := LookPath(p)
	if err != nil {
		return err
	}
	if err := setUser(p.User); err != nil {
		return err
	}
	if p.NoNewPrivileges {
		v := int32(procNoNewPrivsEnable)
		_, _, errno := unix.Syscall6(unix.SYS_PROCCTL, pPid, 0, procNoNewPrivsCtl, uintptr(unsafe.Pointer(&v)), 0, 0)
		if errno != 0 {
			return fmt.Errorf("process.noNewPrivileges: procctl PROC_NO_NEW_PRIVS_CTL (FreeBSD 14.0+): %w", errno)
		}
	}
	if err := conn.Send(Message{Type: MsgReady}); err != nil {
		return err
	}
	if c.Exec {
		err := unix.Exec(argv0, p.Args, p.Env)
		return fmt.Errorf("exec %q: %w", p.Args[0], err)
	}
	sync.Close()
	if dirFd < 0 {
		return errors.New("init: no state dir from the runtime")
	}
	// Blocks until `knast start` opens the fifo for reading.
	w, err := unix.Openat(dirFd, c.FifoName, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	unix.Close(dirFd)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	if _, err := unix.Write(w, []byte("0")); err != nil {
		return fmt.Errorf("write exec fifo: %w", err)
	}
	if len(c.Hooks) > 0 {
		c.State.Status = specs.StateCreated
		if err := runHooks(ctx, "startContainer", c.Hooks, &c.State); err != nil {
			unix.Write(w, []byte(err.Error()))
			return err
		}
	}
	err = unix.Exec(argv0, p.Args, p.Env)
	err = fmt.Errorf("exec %q: %w", p.Args[0], err)
	unix.Write(w, []byte(err.Error()))
	return err
}

// setUser switches to the process's user: groups, gid, uid (and umask), in that order.
func setUser(u specs.User) error {
	if u.Umask != nil {
		unix.Umask(int(*u.Umask))
	}
	// Before FreeBSD 15, setgroups' first entry is the effective gid: lead with the process's gid.
	groups := make([]int, 0, 1+len(u.AdditionalGids))
	groups = append(groups, int(u.GID))
	for _, g := range u.AdditionalGids {
		groups = append(groups, int(g))
	}
	if err := unix.Setgroups(groups); err != nil {
		return fmt.Errorf("process.user.additionalGids: %w", err)
	}
	if err := unix.Setgid(int(u.GID)); err != nil {
		return fmt.Errorf("process.user.gid %d: %w", u.GID, err)
	}
	if err := unix.Setuid(int(u.UID)); err != nil {
		return fmt.Errorf("process.user.uid %d: %w", u.UID, err)
	}
	return nil
}

// cloexecFrom marks every fd from first on close-on-exec, so nothing of knast's reaches the container
// (CVE-2024-21626): close_range(2) where the kernel has CLOSE_RANGE_CLOEXEC, else one fd at a time.
func cloexecFrom(first int) error {
	_, _, errno := unix.Syscall(unix.SYS_CLOSE_RANGE, uintptr(first), uintptr(^uint32(0)), closeRangeCloexec)
	if errno == 0 {
		return nil
	}
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return fmt.Errorf("getrlimit NOFILE: %w", err)
	}
	limit := min(rl.Cur, 1<<20)
	for fd := first; fd < int(limit); fd++ {
		unix.CloseOnExec(fd)
	}
	return nil
}

// initConsole makes a new pty the controlling terminal and stdio, and hands its master to whoever listens
// on the console socket.
func initConsole(consoleFd int, size *specs.Box) error {
	if consoleFd < 0 {
		return errors.New("process.terminal: no console socket (use --console-socket)")
	}
	master, slavePath, err := console.NewPty()
	if err != nil {
		return err
	}
	defer master.Close()
	if size != nil {
		if err := console.SetSize(master, uint16(size.Height), uint16(size.Width)); err != nil {
			return err
		}
	}
	sock := os.NewFile(uintptr(consoleFd), "console-socket")
	defer sock.Close()
	if err := console.SendMasterConn(sock, master); err != nil {
		return err
	}
	if _, err := unix.Setsid(); err != nil {
		return fmt.Errorf("setsid: %w", err)
	}
	slave, err := unix.Open(slavePath, unix.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open %s (is devfs mounted on /dev?): %w", slavePath, err)
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(slave), unix.TIOCSCTTY, 0); errno != 0 {
		return fmt.Errorf("set controlling terminal: %w", errno)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup2(slave, fd); err != nil {
			return fmt.Errorf("dup pty to fd %d: %w", fd, err)
		}
	}
	if slave > 2 {
		unix.Close(slave)
	}
	return nil
}
