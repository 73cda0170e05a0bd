//go:build linux

package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container/linux"
	"github.com/knast/knast/internal/store"
)

type linuxBackend struct{ log *slog.Logger }

func newBackend(log *slog.Logger) backend { return &linuxBackend{log: log} }

func (b *linuxBackend) create(ctx context.Context, r *createRequest) error {
	s := r.Spec
	if s.Linux == nil {
		return errors.New("config.json: linux: required on Linux")
	}
	var join []specs.LinuxNamespace
	var create []specs.LinuxNamespaceType
	userNS := false
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.UserNamespace {
			userNS = true
		}
		if ns.Path != "" {
			join = append(join, ns)
		} else {
			create = append(create, ns.Type)
		}
	}
	io, err := newSpawnIO(r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr, r.Opts.PreserveFds, r.Opts.ConsoleSocket)
	if err != nil {
		return err
	}
	defer io.close()
	fifo, err := os.OpenFile(r.FifoPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	defer fifo.Close()
	fifoFd := 3 + len(io.extra)
	io.extra = append(io.extra, fifo)
	p, err := linux.Spawn(ctx, linux.SpawnConfig{
		Args: []string{"init"}, Join: join, New: create,
		UIDMappings: s.Linux.UIDMappings, GIDMappings: s.Linux.GIDMappings,
		TimeOffsets: s.Linux.TimeOffsets,
		Stdin:       io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra,
	})
	if err != nil {
		return err
	}
	defer p.Sync.Close()
	// A blocked protocol read must end when the create is cancelled.
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	if err := r.onPid(p.Pid); err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		return err
	}
	conn := linux.NewConn(p.Sync)
	cfg := &linux.InitConfig{
		ID: r.ID, Spec: s, Rootfs: r.Rootfs, FifoFd: fifoFd, NoPivot: r.Opts.NoPivot,
		NoNewKeyring: r.Opts.NoNewKeyring, PreserveFds: r.Opts.PreserveFds, ConsoleFd: io.consoleFd,
		UserNS: userNS, State: r.state(),
	}
	if err := conn.Send(linux.Message{Type: linux.MsgConfig, Config: cfg}); err != nil {
		return initErr(ctx, err)
	}
	if _, err := conn.Expect(linux.MsgHooks); err != nil {
		return initErr(ctx, err)
	}
	if s.Hooks != nil {
		//nolint:staticcheck // prestart is deprecated but still part of the spec
		if err := r.runHooks(ctx, "prestart", s.Hooks.Prestart); err != nil {
			return err
		}
		if err := r.runHooks(ctx, "createRuntime", s.Hooks.CreateRuntime); err != nil {
			return err
		}
	}
	if err := conn.Send(linux.Message{Type: linux.MsgHooksDone}); err != nil {
		return initErr(ctx, err)
	}
	if _, err := conn.Expect(linux.MsgReady); err != nil {
		return initErr(ctx, err)
	}
	return nil
}

// initErr turns a protocol failure into the most useful error: the init's own message, or the
// cancellation that closed the socket.
func initErr(ctx context.Context, err error) error {
	var ie *linux.InitError
	if errors.As(err, &ie) {
		return fmt.Errorf("container init: %s", ie.Msg)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("container init: %w", err)
}

// spawnIO is the stdio and extra fds of a spawned init: the preserved fds first, then the console socket.
type spawnIO struct {
	stdin, stdout, stderr *os.File
	extra                 []*os.File
	consoleFd             int // in the child, or -1
	console               *os.File
}

func newSpawnIO(stdin, stdout, stderr *os.File, preserve int, consoleSocket string) (*spawnIO, error) {
	io := &spawnIO{stdin: stdin, stdout: stdout, stderr: stderr, consoleFd: -1}
	if io.stdin == nil {
		io.stdin, io.stdout, io.stderr = os.Stdin, os.Stdout, os.Stderr
	}
	for i := 0; i < preserve; i++ {
		io.extra = append(io.extra, os.NewFile(uintptr(3+i), "preserved-fd-"+strconv.Itoa(3+i)))
	}
	if consoleSocket != "" {
		f, err := dialConsole(consoleSocket)
		if err != nil {
			return nil, err
		}
		io.console, io.consoleFd = f, 3+len(io.extra)
		io.extra = append(io.extra, f)
	}
	return io, nil
}

func (io *spawnIO) close() {
	if io.console != nil {
		io.console.Close()
	}
}

// exec joins every namespace of the container's init and runs the process there.
func (b *linuxBackend) exec(ctx context.Context, r *execRequest) (int, error) {
	s := r.Spec
	if s.Linux == nil {
		return -1, errors.New("config.json: linux: required on Linux")
	}
	var join []specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		join = append(join, specs.LinuxNamespace{Type: ns.Type, Path: fmt.Sprintf("/proc/%d/ns/%s", r.Rec.Pid, nsProcName(ns.Type))})
	}
	io, err := newSpawnIO(r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr, r.Opts.PreserveFds, r.Opts.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer io.close()
	p, err := linux.Spawn(ctx, linux.SpawnConfig{
		Args: []string{"init"}, Join: join,
		Stdin: io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra,
	})
	if err != nil {
		return -1, err
	}
	defer p.Sync.Close()
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	conn := linux.NewConn(p.Sync)
	cfg := &linux.InitConfig{
		ID: r.Rec.ID, Spec: s, Rootfs: r.Rec.Rootfs, PreserveFds: r.Opts.PreserveFds,
		ConsoleFd: io.consoleFd, Exec: true,
	}
	err = conn.Send(linux.Message{Type: linux.MsgConfig, Config: cfg})
	if err == nil {
		_, err = conn.Expect(linux.MsgReady)
	}
	if err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		unix.Wait4(p.Pid, nil, 0, nil)
		return -1, initErr(ctx, err)
	}
	return p.Pid, nil
}

// nsProcName is the name of a namespace under /proc/<pid>/ns.
func nsProcName(t specs.LinuxNamespaceType) string {
	switch t {
	case specs.MountNamespace:
		return "mnt"
	case specs.NetworkNamespace:
		return "net"
	default:
		return string(t)
	}
}

// dialConsole connects to the --console-socket; the connected fd goes to the init, which sends the pty
// master through it.
func dialConsole(path string) (*os.File, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	defer c.Close()
	f, err := c.(*net.UnixConn).File()
	if err != nil {
		return nil, fmt.Errorf("console socket: %w", err)
	}
	return f, nil
}

// processes lists the container's processes: every process in the init's pid namespace when the
// container has its own, else just the init.
func (b *linuxBackend) processes(rec *store.Container, s *specs.Spec) ([]int, error) {
	if rec.Pid == 0 || !ProcAlive(rec.Pid, rec.PidStart) {
		return nil, nil
	}
	own := false
	if s != nil && s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			own = own || (ns.Type == specs.PIDNamespace && ns.Path == "")
		}
	}
	if !own {
		return []int{rec.Pid}, nil
	}
	target, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", rec.Pid))
	if err != nil {
		return nil, fmt.Errorf("container %s: pid namespace: %w", rec.ID, err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/pid"); err == nil && ns == target {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// destroy detaches any mount under the rootfs that reached the host's mount namespace (a shared
// rootfsPropagation lets the container's mounts propagate back).
func (b *linuxBackend) destroy(ctx context.Context, rec *store.Container, s *specs.Spec) error {
	if rec.Rootfs == "" {
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(rec.Rootfs))
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	// Deepest first, so parents are not busy.
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmount %s: %w", mounts[i].Mountpoint, err)
		}
	}
	return nil
}
