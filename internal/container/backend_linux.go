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
	stdin, stdout, stderr := r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr
	if stdin == nil {
		stdin, stdout, stderr = os.Stdin, os.Stdout, os.Stderr
	}
	var extra []*os.File
	for i := 0; i < r.Opts.PreserveFds; i++ {
		extra = append(extra, os.NewFile(uintptr(3+i), "preserved-fd-"+strconv.Itoa(3+i)))
	}
	consoleFd := -1
	if r.Opts.ConsoleSocket != "" {
		f, err := dialConsole(r.Opts.ConsoleSocket)
		if err != nil {
			return err
		}
		defer f.Close()
		consoleFd = 3 + len(extra)
		extra = append(extra, f)
	}
	p, err := linux.Spawn(ctx, linux.SpawnConfig{
		Args: []string{"init"}, Join: join, New: create,
		UIDMappings: s.Linux.UIDMappings, GIDMappings: s.Linux.GIDMappings,
		TimeOffsets: s.Linux.TimeOffsets,
		Stdin:       stdin, Stdout: stdout, Stderr: stderr, ExtraFiles: extra,
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
		ID: r.ID, Spec: s, Rootfs: r.Rootfs, FifoPath: r.FifoPath, NoPivot: r.Opts.NoPivot,
		NoNewKeyring: r.Opts.NoNewKeyring, PreserveFds: r.Opts.PreserveFds, ConsoleFd: consoleFd,
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
