//go:build linux

package container

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container/linux"
	"github.com/knast/knast/internal/container/linux/cgroups"
	"github.com/knast/knast/internal/container/linux/seccomp"
	"github.com/knast/knast/internal/store"
)

type linuxBackend struct {
	log  *slog.Logger
	root string // the runtime's --root, for caches
}

func newBackend(log *slog.Logger, root string) backend { return &linuxBackend{log: log, root: root} }

// seccompFilter compiles the config's profile once, through the cache under --root. "@cache" cannot
// collide with a container's state dir: '@' is not allowed in container IDs.
func (b *linuxBackend) seccompFilter(s *specs.Spec) (*seccomp.Filter, error) {
	if s.Linux == nil || s.Linux.Seccomp == nil {
		return nil, nil
	}
	var uts unix.Utsname
	unix.Uname(&uts)
	f, err := seccomp.PrepareCached(s.Linux.Seccomp, filepath.Join(b.root, "@cache", "seccomp"), unix.ByteSliceToString(uts.Release[:]))
	if err != nil {
		return nil, err
	}
	if sk := f.Skipped(); len(sk) > 0 {
		b.log.Debug("seccomp: syscalls unknown here were left out", "names", sk)
	}
	return f, nil
}

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
	// Compiled before anything starts, so a bad profile fails the create early.
	filter, err := b.seccompFilter(s)
	if err != nil {
		return err
	}
	cg, err := b.cgroup(r.ID, s)
	if err != nil {
		return err
	}
	// A cgroup that already holds processes belongs to someone else: joining it would also mean removing it
	// on delete.
	if pids, err := cg.Pids(); err == nil && len(pids) > 0 {
		return fmt.Errorf("linux.cgroupsPath: cgroup %s is in use by %d process(es)", cg.Path(), len(pids))
	}
	// The cgroup2 directory must exist for the init to be cloned into it; the rest of the cgroup (the v1
	// hierarchies, every limit) is made while the init is exec'd, and the init waits at its gate until
	// that is done: it joins the v1 cgroups and runs anything but knast only afterwards. destroy removes
	// all of it on every failure path.
	cgDir, err := cg.MakeV2Dir(s.Linux.Resources)
	if err != nil {
		return err
	}
	if cgDir != nil {
		defer cgDir.Close()
	}
	cgMade := make(chan error, 1)
	// pids.max is set once the init is ready, as runc does: the init is a Go process whose runtime
	// threads would otherwise count against a tight limit of the container's own and abort it.
	res, pids := withoutPids(s.Linux.Resources)
	go func() { cgMade <- cg.Create(res) }()
	// Waited for on every path, so a failed create never races its own cgroup creation in rollback.
	cgWait := sync.OnceValue(func() error { return <-cgMade })
	defer cgWait()
	fifo, err := os.OpenFile(r.FifoPath, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open exec fifo: %w", err)
	}
	defer fifo.Close()
	fifoFd := 3 + len(io.extra)
	io.extra = append(io.extra, fifo)
	// With a user namespace the init cannot ID-map host filesystems: the trees are made here.
	trees, err := linux.IDMapTrees(s)
	if err != nil {
		return fmt.Errorf("ID-mapped mounts: %w", err)
	}
	defer linux.CloseIDMapTrees(trees)
	idmapFds := make(map[int]int, len(trees))
	for _, i := range slices.Sorted(maps.Keys(trees)) {
		idmapFds[i] = 3 + len(io.extra)
		io.extra = append(io.extra, trees[i])
	}
	t0 := time.Now()
	p, err := linux.Spawn(ctx, linux.SpawnConfig{
		Args: []string{"init"}, Join: join, New: create,
		UIDMappings: s.Linux.UIDMappings, GIDMappings: s.Linux.GIDMappings,
		TimeOffsets: s.Linux.TimeOffsets,
		Stdin:       io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra,
		Cgroup: cgDir, CgroupV1: cg.V1Dirs(), Gate: cgWait,
	})
	if err != nil {
		return err
	}
	defer p.Sync.Close()
	// A blocked protocol read must end when the create is cancelled.
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	b.log.Debug("spawned init", "id", r.ID, "pid", p.Pid, "took", time.Since(t0))
	// The init is already in every cgroup: v2 through CLONE_INTO_CGROUP, v1 by joining them itself in
	// the C phase. The config goes out first so the init prepares the rootfs while the pid is recorded.
	conn := linux.NewConn(p.Sync)
	state := r.state()
	state.Pid = p.Pid
	cfg := &linux.InitConfig{
		ID: r.ID, Spec: s, Rootfs: r.Rootfs, FifoFd: fifoFd, NoPivot: r.Opts.NoPivot,
		NoNewKeyring: r.Opts.NoNewKeyring, PreserveFds: r.Opts.PreserveFds, ConsoleFd: io.consoleFd,
		UserNS: userNS, IDMapFds: idmapFds, State: state, Seccomp: filter,
	}
	sendErr := conn.Send(linux.Message{Type: linux.MsgConfig, Config: cfg})
	if err := r.onPid(p.Pid); err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		return err
	}
	if sendErr != nil {
		return initErr(ctx, sendErr)
	}
	if _, err := conn.Expect(linux.MsgHooks); err != nil {
		return initErr(ctx, err)
	}
	b.log.Debug("rootfs prepared", "id", r.ID, "took", time.Since(t0))
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
	if err := awaitReady(conn, p.Pid, s, state); err != nil {
		return initErr(ctx, err)
	}
	if pids != nil {
		if err := cg.Update(&specs.LinuxResources{Pids: pids}); err != nil {
			return err
		}
	}
	b.log.Debug("init ready", "id", r.ID, "took", time.Since(t0))
	return nil
}

// withoutPids splits the pids limit off r.
func withoutPids(r *specs.LinuxResources) (*specs.LinuxResources, *specs.LinuxPids) {
	if r == nil || r.Pids == nil {
		return r, nil
	}
	cp := *r
	cp.Pids = nil
	return &cp, r.Pids
}

// awaitReady reads the init's last messages: a seccomp notify fd to pass on, then ready.
func awaitReady(conn *linux.Conn, pid int, s *specs.Spec, state specs.State) error {
	for {
		m, err := conn.Recv()
		if err != nil {
			return err
		}
		switch m.Type {
		case linux.MsgReady:
			return nil
		case linux.MsgError:
			return &linux.InitError{Msg: m.Error}
		case linux.MsgSeccomp:
			if err := passNotifyFd(pid, m.Fd, s, state); err != nil {
				return err
			}
			if err := conn.Send(linux.Message{Type: linux.MsgSeccompDone}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("init protocol: unexpected %q", m.Type)
		}
	}
}

// passNotifyFd copies the seccomp notify fd out of the init and hands it to the listener on the host.
func passNotifyFd(pid, fd int, s *specs.Spec, state specs.State) error {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return fmt.Errorf("seccomp notify fd: pidfd_open %d: %w", pid, err)
	}
	defer unix.Close(pidfd)
	nfd, err := unix.PidfdGetfd(pidfd, fd, 0)
	if err != nil {
		return fmt.Errorf("seccomp notify fd: pidfd_getfd: %w", err)
	}
	defer unix.Close(nfd)
	st := specs.ContainerProcessState{Pid: pid, Metadata: s.Linux.Seccomp.ListenerMetadata, State: state}
	return seccomp.SendNotifyFd(s.Linux.Seccomp.ListenerPath, nfd, st)
}

// initErr turns a protocol failure into the most useful error: the init's own message, or the
// cancellation that closed the socket.
func initErr(ctx context.Context, err error) error {
	var ie *linux.InitError
	if errors.As(err, &ie) {
		return initReported(ie.Msg)
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
	filter, err := b.seccompFilter(s)
	if err != nil {
		return -1, err
	}
	var join []specs.LinuxNamespace
	for _, ns := range s.Linux.Namespaces {
		join = append(join, specs.LinuxNamespace{Type: ns.Type, Path: fmt.Sprintf("/proc/%d/ns/%s", r.Rec.Pid, nsProcName(ns.Type))})
	}
	cg, err := b.cgroup(r.Rec.ID, s)
	if err != nil {
		return -1, err
	}
	cgDir, err := cg.V2Dir()
	if err != nil {
		return -1, err
	}
	if cgDir != nil {
		defer cgDir.Close()
	}
	io, err := newSpawnIO(r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr, r.Opts.PreserveFds, r.Opts.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer io.close()
	p, err := linux.Spawn(ctx, linux.SpawnConfig{
		Args: []string{"init"}, Join: join,
		Stdin: io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra, Cgroup: cgDir,
	})
	if err != nil {
		return -1, err
	}
	defer p.Sync.Close()
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	// Moved by the parent once its Go runtime runs (not in the C phase, as the init is): the container's
	// pids.max is in force and must not keep the runtime from starting its threads.
	if err := cg.Enter(p.Pid); err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		unix.Wait4(p.Pid, nil, 0, nil)
		return -1, err
	}
	conn := linux.NewConn(p.Sync)
	cfg := &linux.InitConfig{
		ID: r.Rec.ID, Spec: s, Rootfs: r.Rec.Rootfs, PreserveFds: r.Opts.PreserveFds,
		ConsoleFd: io.consoleFd, Exec: true, Seccomp: filter,
	}
	err = conn.Send(linux.Message{Type: linux.MsgConfig, Config: cfg})
	if err == nil {
		st := specs.State{Version: specs.Version, ID: r.Rec.ID, Status: specs.StateRunning, Pid: r.Rec.Pid, Bundle: r.Rec.Bundle, Annotations: r.Rec.Annotations}
		err = awaitReady(conn, p.Pid, s, st)
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

// processes lists the container's processes: its cgroup's members.
func (b *linuxBackend) processes(rec *store.Container, s *specs.Spec) ([]int, error) {
	if s == nil {
		if rec.Pid != 0 && ProcAlive(rec.Pid, rec.PidStart) {
			return []int{rec.Pid}, nil
		}
		return nil, nil
	}
	cg, err := b.cgroup(rec.ID, s)
	if err != nil {
		return nil, err
	}
	pids, err := cg.Pids()
	if err != nil {
		return nil, fmt.Errorf("container %s: %w", rec.ID, err)
	}
	return pids, nil
}

// cgroup is the container's cgroup as its config places it (no I/O beyond detecting the host's layout).
func (b *linuxBackend) cgroup(id string, s *specs.Spec) (*cgroups.Cgroup, error) {
	path := ""
	if s != nil && s.Linux != nil {
		path = s.Linux.CgroupsPath
	}
	if path == "" {
		path = b.defaultCgroupPath(id)
	}
	cg, err := cgroups.New(cgroups.Resolve(path, id))
	if err != nil {
		return nil, err
	}
	cg.SetLogger(b.log)
	return cg, nil
}

// defaultCgroupPath places a container without linux.cgroupsPath: /knast/<id> under the default root,
// and under a name derived from the root otherwise, so two state roots (test suites, several engines on
// one host) can use the same container ID without sharing, and then deleting, each other's cgroup.
func (b *linuxBackend) defaultCgroupPath(id string) string {
	if filepath.Clean(b.root) == DefaultRoot {
		return "/knast/" + id
	}
	sum := sha256.Sum256([]byte(filepath.Clean(b.root)))
	return "/knast-" + hex.EncodeToString(sum[:4]) + "/" + id
}

func (b *linuxBackend) resources(rec *store.Container, s *specs.Spec) (resourceCtl, error) {
	cg, err := b.cgroup(rec.ID, s)
	if err != nil {
		return nil, err
	}
	return linuxCgroup{cg}, nil
}

// linuxCgroup adapts *cgroups.Cgroup to the lifecycle's resourceCtl.
type linuxCgroup struct{ *cgroups.Cgroup }

func (c linuxCgroup) Stats() (any, error) { return c.Cgroup.Stats() }

// destroy detaches any mount under the rootfs that reached the host's mount namespace (a shared
// rootfsPropagation lets the container's mounts propagate back).
func (b *linuxBackend) destroy(ctx context.Context, rec *store.Container, s *specs.Spec) error {
	var errs []error
	if cg, err := b.cgroup(rec.ID, s); err != nil {
		errs = append(errs, err)
	} else if err := cg.Destroy(); err != nil {
		errs = append(errs, err)
	}
	if err := b.unmountLeftovers(rec, s); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// unmountLeftovers detaches the container's mounts that are visible in knast's mount namespace: those
// below the rootfs, and without a mount namespace also knast's bind of the rootfs onto itself. A mount
// at the rootfs made before create (containerd's, podman's, a knast overlay bundle's) belongs to whoever
// made it and stays.
func (b *linuxBackend) unmountLeftovers(rec *store.Container, s *specs.Spec) error {
	if rec.Rootfs == "" {
		return nil
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(rec.Rootfs))
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	// Deepest first, so parents are not busy.
	for i := len(mounts) - 1; i >= 0; i-- {
		if filepath.Clean(mounts[i].Mountpoint) == filepath.Clean(rec.Rootfs) {
			continue
		}
		if err := unix.Unmount(mounts[i].Mountpoint, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmount %s: %w", mounts[i].Mountpoint, err)
		}
	}
	if s != nil && s.Linux != nil && !hasNamespace(s.Linux.Namespaces, specs.MountNamespace) {
		// The topmost mount at the rootfs is the init's bind of it onto itself.
		if err := unix.Unmount(rec.Rootfs, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			return fmt.Errorf("unmount %s: %w", rec.Rootfs, err)
		}
	}
	return nil
}
