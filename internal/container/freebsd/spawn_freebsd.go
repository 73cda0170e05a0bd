//go:build freebsd

package freebsd

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"

	"golang.org/x/sys/unix"
)

// SpawnConfig is the stdio and extra fds of a re-exec'd init and the jail it enters.
type SpawnConfig struct {
	Jid                   int
	Stdin, Stdout, Stderr *os.File
	ExtraFiles            []*os.File // fd 3 onwards in the child
}

// Spawned is a started init: its pid and the parent's end of the sync socket.
type Spawned struct {
	Pid  int
	Sync *os.File
	Conn *Conn
}

// Spawn starts `knast init` from this binary on the host; the child attaches itself to the jail before
// anything else. SysProcAttr.Jail is not used: it attaches before exec, and the knast binary is not
// inside the container's root.
func Spawn(c SpawnConfig) (*Spawned, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the knast binary: %w", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	parent, child := os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-child")
	defer child.Close()
	extra := append(append([]*os.File{}, c.ExtraFiles...), child)
	cmd := &exec.Cmd{
		Path: exe,
		Args: []string{"knast", "init"},
		Env: []string{
			EnvJail + "=" + strconv.Itoa(c.Jid),
			EnvSync + "=" + strconv.Itoa(3+len(c.ExtraFiles)),
		},
		Stdin: c.Stdin, Stdout: c.Stdout, Stderr: c.Stderr,
		ExtraFiles: extra,
	}
	if err := cmd.Start(); err != nil {
		parent.Close()
		return nil, fmt.Errorf("start container init: %w", err)
	}
	pid := cmd.Process.Pid
	// The pid is reaped by whoever waits for the container (run, exec), not by os/exec.
	cmd.Process.Release()
	return &Spawned{Pid: pid, Sync: parent, Conn: NewConn(parent)}, nil
}

// SendFd sends the init its first message: one byte with fd attached, or without when fd < 0.
func (s *Spawned) SendFd(fd int) error {
	var oob []byte
	if fd >= 0 {
		oob = unix.UnixRights(fd)
	}
	if err := unix.Sendmsg(int(s.Sync.Fd()), []byte{0}, oob, nil, 0); err != nil {
		return fmt.Errorf("send to container init: %w", err)
	}
	return nil
}
