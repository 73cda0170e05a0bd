//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/console"
	"github.com/knast/knast/internal/container/linux/seccomp"
)

// HookRunner runs one kind of hooks with the container state on their stdin.
type HookRunner func(ctx context.Context, kind string, hooks []specs.Hook, state *specs.State) error

// Init is the body of `knast init`: the container's first process after the nsenter constructor has put it
// in its namespaces. It never returns on success (the user process replaces it); on failure it reports the
// error to the parent over the sync socket and returns it.
//
// Everything runs on one locked OS thread: capabilities and the mount namespace's root/cwd are per thread,
// and execve must happen on the thread that set them.
func Init(ctx context.Context, runHooks HookRunner) error {
	runtime.LockOSThread()
	sync, err := ChildSync()
	if err != nil {
		return err
	}
	conn := NewConn(sync)
	m, err := conn.Expect(MsgConfig)
	if err != nil {
		return fmt.Errorf("init: read config: %w", err)
	}
	if m.Config == nil || m.Config.Spec == nil || m.Config.Spec.Process == nil {
		err = errors.New("init: config message without a process")
	} else if m.Config.Exec {
		err = initExec(m.Config, sync)
	} else {
		err = initContainer(ctx, m.Config, conn, sync, runHooks)
	}
	// Only reached on failure: tell the parent why. If the parent is gone there is no one to tell.
	_ = conn.Send(Message{Type: MsgError, Error: err.Error()})
	return err
}

func initContainer(ctx context.Context, c *InitConfig, conn *Conn, sync *os.File, runHooks HookRunner) error {
	s := c.Spec
	p := s.Process
	if err := initCloseInherited(c.PreserveFds); err != nil {
		return err
	}
	if s.Linux == nil {
		return errors.New("linux: required on Linux")
	}
	opts := RootfsOptions{
		NoPivot: c.NoPivot, UserNS: c.UserNS, Terminal: p.Terminal,
		HostMountNS: !initHasNamespace(s.Linux.Namespaces, specs.MountNamespace),
		IDMapTrees:  c.IDMapFds,
	}
	if err := PrepareRootfs(s, c.Rootfs, opts); err != nil {
		return err
	}
	// prestart and createRuntime hooks run in the runtime namespace: the parent runs them.
	if err := conn.Send(Message{Type: MsgHooks}); err != nil {
		return err
	}
	if _, err := conn.Expect(MsgHooksDone); err != nil {
		return err
	}
	if s.Hooks != nil {
		if err := runHooks(ctx, "createContainer", s.Hooks.CreateContainer, &c.State); err != nil {
			return err
		}
	}
	// The exec fifo lives in the host's state dir, which a user-namespaced init may not reach: the parent
	// opened it (O_PATH) and the fd survives pivot_root.
	fifo := c.FifoFd
	if err := EnterRoot(c.Rootfs, opts); err != nil {
		return err
	}
	if p.Terminal {
		if err := initConsole(c.ConsoleFd, p.ConsoleSize, true); err != nil {
			return err
		}
	}
	if err := SetHostname(s.Hostname, s.Domainname); err != nil {
		return err
	}
	if err := WriteSysctl(s.Linux.Sysctl); err != nil {
		return err
	}
	if err := FinishRootfs(s); err != nil {
		return err
	}
	if err := initProcessCommon(c); err != nil {
		return err
	}
	argv0, err := initLookPath(p)
	if err != nil {
		return err
	}
	if err := initSecurity(conn, s, c.Seccomp); err != nil {
		return err
	}
	if err := conn.Send(Message{Type: MsgReady}); err != nil {
		return err
	}
	sync.Close()

	// Blocks until `knast start` opens the fifo for reading.
	w, err := unix.Open("/proc/self/fd/"+strconv.Itoa(fifo), unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("reopen exec fifo: %w", err)
	}
	unix.Close(fifo)
	if _, err := unix.Write(w, []byte("0")); err != nil {
		return fmt.Errorf("write exec fifo: %w", err)
	}
	if s.Hooks != nil {
		c.State.Status = specs.StateCreated
		if err := runHooks(ctx, "startContainer", s.Hooks.StartContainer, &c.State); err != nil {
			initFifoError(w, err)
			return err
		}
	}
	err = unix.Exec(argv0, p.Args, p.Env)
	err = fmt.Errorf("exec %q: %w", p.Args[0], err)
	initFifoError(w, err)
	return err
}

// initExec runs a process in an existing container: the nsenter phase joined its namespaces.
func initExec(c *InitConfig, sync *os.File) error {
	p := c.Spec.Process
	if err := initCloseInherited(c.PreserveFds); err != nil {
		return err
	}
	if p.Terminal {
		// An exec'd process gets its own pty; /dev/console stays the container's.
		if err := initConsole(c.ConsoleFd, p.ConsoleSize, false); err != nil {
			return err
		}
	}
	if err := initProcessCommon(c); err != nil {
		return err
	}
	argv0, err := initLookPath(p)
	if err != nil {
		return err
	}
	conn := NewConn(sync)
	if err := initSecurity(conn, c.Spec, c.Seccomp); err != nil {
		return err
	}
	if err := conn.Send(Message{Type: MsgReady}); err != nil {
		return err
	}
	err = unix.Exec(argv0, p.Args, p.Env)
	return fmt.Errorf("exec %q: %w", p.Args[0], err)
}

// initSecurity drops to the process's user and capabilities and installs its seccomp filter. Like runc,
// the filter goes in while CAP_SYS_ADMIN is still held unless no_new_privs allows loading it last, which
// keeps the init's own remaining syscalls out of the profile's reach.
func initSecurity(conn *Conn, s *specs.Spec, filter *seccomp.Filter) error {
	if filter == nil && s.Linux != nil && s.Linux.Seccomp != nil {
		return errors.New("linux.seccomp: the runtime sent no compiled filter")
	}
	if err := ApplyLSM(s.Process); err != nil {
		return err
	}
	nnp := s.Process.NoNewPrivileges
	if filter != nil && !nnp {
		if err := initLoadSeccomp(conn, filter); err != nil {
			return err
		}
	}
	if err := FinalizeProcess(s.Process); err != nil {
		return err
	}
	if filter != nil && nnp {
		return initLoadSeccomp(conn, filter)
	}
	return nil
}

func initLoadSeccomp(conn *Conn, f *seccomp.Filter) error {
	fd, err := f.Load()
	if err != nil {
		return fmt.Errorf("linux.seccomp: %w", err)
	}
	if fd < 0 {
		return nil
	}
	defer unix.Close(fd)
	if err := conn.Send(Message{Type: MsgSeccomp, Fd: fd}); err != nil {
		return err
	}
	_, err = conn.Expect(MsgSeccompDone)
	return err
}

// initProcessCommon applies what must happen while init is still root in its user namespace.
func initProcessCommon(c *InitConfig) error {
	p := c.Spec.Process
	if err := SetRlimits(p.Rlimits); err != nil {
		return err
	}
	if err := SetOOMScoreAdj(p.OOMScoreAdj); err != nil {
		return err
	}
	if c.Spec.Linux != nil {
		if err := SetPersonality(c.Spec.Linux.Personality); err != nil {
			return err
		}
	}
	if !c.NoNewKeyring && !c.Exec {
		if err := JoinSessionKeyring("_ses." + c.ID); err != nil {
			return err
		}
	}
	cwd := p.Cwd
	if cwd == "" {
		cwd = "/"
	}
	// After pivot_root "/" is the container's root, so MkdirAll cannot leave it even through symlinks.
	if !c.Exec {
		if err := os.MkdirAll(cwd, 0o755); err != nil {
			return fmt.Errorf("process.cwd: %w", err)
		}
	}
	if err := unix.Chdir(cwd); err != nil {
		return fmt.Errorf("process.cwd: chdir %s: %w", cwd, err)
	}
	// CVE-2024-21626: a cwd reached through a leaked host fd shows up as "(unreachable)".
	if wd, err := unix.Getwd(); err != nil || !strings.HasPrefix(wd, "/") {
		return fmt.Errorf("process.cwd: %q is outside the container's root", cwd)
	}
	return nil
}

// initCloseInherited marks every fd above stdio and the preserved ones close-on-exec, so nothing of
// knast's (the sync socket, the fifo, the binary's memfd, a stray host directory) reaches the container.
func initCloseInherited(preserve int) error {
	first := uint(3 + preserve)
	if err := unix.CloseRange(first, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err == nil {
		return nil
	}
	// Kernels before 5.11 lack CLOSE_RANGE_CLOEXEC: walk the fd table instead.
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err == nil && fd >= int(first) {
			unix.CloseOnExec(fd)
		}
	}
	return nil
}

// initConsole makes a new pty the controlling terminal and stdio, and hands its master to whoever listens
// on the console socket.
func initConsole(consoleFd int, size *specs.Box, devConsole bool) error {
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
		return fmt.Errorf("open %s: %w", slavePath, err)
	}
	if err := unix.IoctlSetInt(slave, unix.TIOCSCTTY, 0); err != nil {
		return fmt.Errorf("set controlling terminal: %w", err)
	}
	for fd := 0; fd < 3; fd++ {
		if err := unix.Dup3(slave, fd, 0); err != nil {
			return fmt.Errorf("dup pty to fd %d: %w", fd, err)
		}
	}
	if slave > 2 {
		unix.Close(slave)
	}
	if !devConsole {
		return nil
	}
	return SetupConsoleMount(slavePath)
}

// initLookPath finds args[0] in the container's PATH, as execvp would, before privileges are dropped.
func initLookPath(p *specs.Process) (string, error) {
	name := p.Args[0]
	if strings.Contains(name, "/") {
		if _, err := os.Stat(name); err != nil {
			return "", fmt.Errorf("process.args[0]: %w", err)
		}
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range p.Env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		f := filepath.Join(dir, name)
		if st, err := os.Stat(f); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return f, nil
		}
	}
	return "", fmt.Errorf("process.args[0]: %q: executable file not found in $PATH", name)
}

func initFifoError(fd int, err error) {
	unix.Write(fd, []byte(err.Error()))
}

func initHasNamespace(nss []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	for _, ns := range nss {
		if ns.Type == t {
			return true
		}
	}
	return false
}
