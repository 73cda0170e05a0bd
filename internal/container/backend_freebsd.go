//go:build freebsd

package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container/freebsd"
	"github.com/knast/knast/internal/store"
)

// freebsdBackend runs containers as jails: made with jail_set, filesystems mounted from the host with
// nmount, devices through devfs rules, limits through rctl, and an init that attaches itself.
type freebsdBackend struct {
	log  *slog.Logger
	root string // the runtime's --root
}

func newBackend(log *slog.Logger, root string) backend { return &freebsdBackend{log: log, root: root} }

// viewDir is where a read-only root's nullfs view is mounted: outside the state dir, which the lifecycle
// removes recursively (a view left mounted there would expose the rootfs to that removal). '@' cannot
// collide with a container ID.
func (b *freebsdBackend) viewDir(id string) string { return filepath.Join(b.root, "@jails", id) }

func (b *freebsdBackend) create(ctx context.Context, r *createRequest) error {
	s := r.Spec
	jail := freebsd.FullJailName(r.ID, s)
	// A read-only root is a read-only nullfs view of the rootfs: the jail is rooted there, and the
	// mount points are made in the rootfs below it.
	jailRoot, readonly := r.Rootfs, s.Root != nil && s.Root.Readonly
	if readonly {
		jailRoot = b.viewDir(r.ID)
	}
	params, err := freebsd.JailParams(r.ID, jailRoot, s)
	if err != nil {
		return err
	}
	mounts, err := freebsd.Mounts(r.Rootfs, jailRoot, s)
	if err != nil {
		return err
	}
	var devRules []freebsd.DevfsRule
	var devPath string
	if s.FreeBSD != nil && len(s.FreeBSD.Devices) > 0 {
		if devRules, err = freebsd.DeviceRules(s.FreeBSD.Devices); err != nil {
			return err
		}
		devPath = filepath.Join(jailRoot, "dev")
		if !hasMountAt(mounts, devPath) {
			return errors.New("freebsd.devices: needs a devfs mount on /dev")
		}
	}
	rules, ignored, err := freebsd.Rules(jail, linuxResources(s), s.Annotations)
	if err != nil {
		return err
	}
	if len(ignored) > 0 {
		b.log.Warn("resources without an rctl counterpart are not applied", "id", r.ID, "fields", ignored)
	}
	if len(rules) > 0 && !freebsd.RacctEnabled() {
		return freebsd.ErrRacctDisabled
	}
	io, err := newJailIO(r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr, r.Opts.PreserveFds, r.Opts.ConsoleSocket)
	if err != nil {
		return err
	}
	defer io.close()

	// Everything below is undone by destroy, which finds it by the jail's name, the rootfs and the
	// view's path.
	t0 := time.Now()
	// Mount points inside an earlier mount (tmpfs on /dev/shm over devfs) can only be made once that is
	// mounted; the others are made now, in the writable rootfs.
	nested := freebsd.Nested(mounts)
	for i, m := range mounts {
		if !nested[i] {
			if err := mountPoint(m, m.Point); err != nil {
				return err
			}
		}
	}
	if readonly {
		// Before jail_set: the jail keeps the directory its path named then, not what is mounted later.
		view := freebsd.RootView(r.Rootfs, jailRoot)
		if err := mountPoint(view, view.Point); err != nil {
			return err
		}
		if err := freebsd.Nmount(view); err != nil {
			return fmt.Errorf("root.readonly: %w", err)
		}
	}
	jid, err := freebsd.JailSet(params, freebsd.JailCreate)
	if err != nil {
		return fmt.Errorf("create jail %s: %w%s", jail, err, jailHint(err))
	}
	for i, m := range mounts {
		if nested[i] {
			if err := mountPoint(m, m.Path); err != nil {
				return err
			}
		}
		if err := freebsd.Nmount(m); err != nil {
			return err
		}
	}
	if err := freebsd.ApplyDeviceRules(devPath, devRules); err != nil {
		return err
	}
	if s.FreeBSD != nil && s.FreeBSD.Jail != nil {
		for _, ifc := range s.FreeBSD.Jail.VnetInterfaces {
			if err := freebsd.MoveInterface(ifc, jid); err != nil {
				return fmt.Errorf("freebsd.jail.vnetInterfaces: %w", err)
			}
		}
	}
	for _, rule := range rules {
		if err := freebsd.AddRule(rule); err != nil {
			return err
		}
	}
	b.log.Debug("jail ready", "id", r.ID, "jid", jid, "took", time.Since(t0))

	stateDir, err := os.Open(r.StateDir)
	if err != nil {
		return fmt.Errorf("open state dir: %w", err)
	}
	defer stateDir.Close()
	p, err := freebsd.Spawn(freebsd.SpawnConfig{Jid: jid, Stdin: io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra})
	if err != nil {
		return err
	}
	defer p.Sync.Close()
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	if err := r.onPid(p.Pid); err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		return err
	}
	// Hooks that name host paths run here, on the host, with the jail made and mounted: a jail has no
	// namespace a host binary could be started in. startContainer hooks run in the jail.
	if s.Hooks != nil {
		//nolint:staticcheck // prestart is deprecated but still part of the spec
		for _, h := range []struct {
			kind  string
			hooks []specs.Hook
		}{{"prestart", s.Hooks.Prestart}, {"createRuntime", s.Hooks.CreateRuntime}, {"createContainer", s.Hooks.CreateContainer}} {
			if err := r.runHooks(ctx, h.kind, h.hooks); err != nil {
				return err
			}
		}
	}
	state := r.state()
	state.Pid = p.Pid
	cfg := &freebsd.InitConfig{
		ID: r.ID, Process: s.Process, PreserveFds: r.Opts.PreserveFds, ConsoleFd: io.consoleFd,
		FifoName: filepath.Base(r.FifoPath), State: state,
	}
	if s.Hooks != nil {
		cfg.Hooks = s.Hooks.StartContainer
	}
	if err := p.SendFd(int(stateDir.Fd())); err != nil {
		return jailInitErr(ctx, err)
	}
	if err := p.Conn.Send(freebsd.Message{Type: freebsd.MsgConfig, Config: cfg}); err != nil {
		return jailInitErr(ctx, err)
	}
	if _, err := p.Conn.Expect(freebsd.MsgReady); err != nil {
		return jailInitErr(ctx, err)
	}
	b.log.Debug("init ready", "id", r.ID, "took", time.Since(t0))
	return nil
}

// linuxResources are the limits of a config: the runtime-spec has no FreeBSD resources, so the Linux
// block (also what `update` merges into) is read.
func linuxResources(s *specs.Spec) *specs.LinuxResources {
	if s == nil || s.Linux == nil {
		return nil
	}
	return s.Linux.Resources
}

func hasMountAt(mounts []freebsd.Mount, path string) bool {
	for _, m := range mounts {
		if m.Path == path && m.FSType == "devfs" {
			return true
		}
	}
	return false
}

// mountPoint makes the mount point of m at path: a file for a nullfs mount of a file, a directory
// otherwise. No process runs in the jail yet, so the path resolved by freebsd.Mounts holds.
func mountPoint(m freebsd.Mount, path string) error {
	if m.FSType == "nullfs" {
		st, err := os.Stat(m.Source)
		if err != nil {
			return fmt.Errorf("nullfs source: %w", err)
		}
		if !st.IsDir() {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return fmt.Errorf("mount point %s: %w", path, err)
			}
			f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY|unix.O_NOFOLLOW, 0o644)
			if err != nil {
				return fmt.Errorf("mount point %s: %w", path, err)
			}
			return f.Close()
		}
	}
	if err := os.MkdirAll(path, 0o755); err != nil {
		return fmt.Errorf("mount point %s: %w", path, err)
	}
	return nil
}

// jailHint names the usual cause of a jail_set failure.
func jailHint(err error) string {
	switch {
	case errors.Is(err, unix.ENOENT):
		return " (an unknown parameter: linux.* needs linux64.ko, vnet a VIMAGE kernel, allow.mount.* the file system's module)"
	case errors.Is(err, unix.EEXIST):
		return " (a jail of that name exists: delete the container or remove the jail)"
	}
	return ""
}

func jailInitErr(ctx context.Context, err error) error {
	var ie *freebsd.InitError
	if errors.As(err, &ie) {
		return initReported(ie.Msg)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("container init: %w", err)
}

// jailIO is the stdio and extra fds of a spawned init: the preserved fds first, then the console socket.
type jailIO struct {
	stdin, stdout, stderr *os.File
	extra                 []*os.File
	consoleFd             int
	console               *os.File
}

func newJailIO(stdin, stdout, stderr *os.File, preserve int, consoleSocket string) (*jailIO, error) {
	io := &jailIO{stdin: stdin, stdout: stdout, stderr: stderr, consoleFd: -1}
	if io.stdin == nil {
		io.stdin, io.stdout, io.stderr = os.Stdin, os.Stdout, os.Stderr
	}
	for i := 0; i < preserve; i++ {
		io.extra = append(io.extra, os.NewFile(uintptr(3+i), "preserved-fd-"+strconv.Itoa(3+i)))
	}
	if consoleSocket != "" {
		c, err := net.Dial("unix", consoleSocket)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		f, err := c.(*net.UnixConn).File()
		c.Close()
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		io.console, io.consoleFd = f, 3+len(io.extra)
		io.extra = append(io.extra, f)
	}
	return io, nil
}

func (io *jailIO) close() {
	if io.console != nil {
		io.console.Close()
	}
}

// jid finds the container's jail; ErrNoJail (wrapped) when it is gone.
func containerJid(rec *store.Container, s *specs.Spec) (string, int, error) {
	name := freebsd.FullJailName(rec.ID, s)
	jid, err := freebsd.JailGet(name)
	return name, jid, err
}

func (b *freebsdBackend) processes(rec *store.Container, s *specs.Spec) ([]int, error) {
	_, jid, err := containerJid(rec, s)
	if errors.Is(err, freebsd.ErrNoJail) {
		if rec.Pid != 0 && ProcAlive(rec.Pid, rec.PidStart) {
			return []int{rec.Pid}, nil
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	procs, err := freebsd.JailProcs(jid)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(procs))
	for _, p := range procs {
		pids = append(pids, p.Pid)
	}
	return pids, nil
}

// destroy removes the jail (killing what runs in it), its rctl rules and every mount under the rootfs.
// Each step finds its object by name or path, so it works after a crash anywhere in create.
func (b *freebsdBackend) destroy(ctx context.Context, rec *store.Container, s *specs.Spec) error {
	var errs []error
	name, jid, err := containerJid(rec, s)
	switch {
	case err == nil:
		if err := freebsd.JailRemove(jid); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, err)
		}
	case !errors.Is(err, freebsd.ErrNoJail):
		errs = append(errs, err)
	}
	if err := freebsd.RemoveRules(name); err != nil {
		errs = append(errs, err)
	}
	view := b.viewDir(rec.ID)
	if err := freebsd.UnmountUnder(view, true); err != nil {
		errs = append(errs, err)
	}
	if rec.Rootfs != "" {
		if err := freebsd.UnmountUnder(rec.Rootfs, false); err != nil {
			errs = append(errs, err)
		}
	}
	// Not RemoveAll: should anything still be mounted there, this fails instead of recursing into it.
	if err := os.Remove(view); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("remove %s: %w", view, err))
	}
	return errors.Join(errs...)
}

func (b *freebsdBackend) exec(ctx context.Context, r *execRequest) (int, error) {
	_, jid, err := containerJid(r.Rec, r.Spec)
	if err != nil {
		return -1, err
	}
	io, err := newJailIO(r.Opts.Stdin, r.Opts.Stdout, r.Opts.Stderr, r.Opts.PreserveFds, r.Opts.ConsoleSocket)
	if err != nil {
		return -1, err
	}
	defer io.close()
	p, err := freebsd.Spawn(freebsd.SpawnConfig{Jid: jid, Stdin: io.stdin, Stdout: io.stdout, Stderr: io.stderr, ExtraFiles: io.extra})
	if err != nil {
		return -1, err
	}
	defer p.Sync.Close()
	stop := context.AfterFunc(ctx, func() { p.Sync.Close() })
	defer stop()
	cfg := &freebsd.InitConfig{
		ID: r.Rec.ID, Process: r.Spec.Process, PreserveFds: r.Opts.PreserveFds, ConsoleFd: io.consoleFd, Exec: true,
	}
	err = p.SendFd(-1)
	if err == nil {
		err = p.Conn.Send(freebsd.Message{Type: freebsd.MsgConfig, Config: cfg})
	}
	if err == nil {
		_, err = p.Conn.Expect(freebsd.MsgReady)
	}
	if err != nil {
		unix.Kill(p.Pid, unix.SIGKILL)
		unix.Wait4(p.Pid, nil, 0, nil)
		return -1, jailInitErr(ctx, err)
	}
	return p.Pid, nil
}

func (b *freebsdBackend) resources(rec *store.Container, s *specs.Spec) (resourceCtl, error) {
	return &jailResources{rec: rec, spec: s, name: freebsd.FullJailName(rec.ID, s)}, nil
}

// jailResources is a jail as a resource group: rctl for limits and usage, SIGSTOP/SIGCONT of every
// process of the jail for pause (FreeBSD has no freezer).
type jailResources struct {
	rec  *store.Container
	spec *specs.Spec
	name string
}

func (j *jailResources) procs() ([]freebsd.Proc, error) {
	jid, err := freebsd.JailGet(j.name)
	if err != nil {
		return nil, err
	}
	return freebsd.JailProcs(jid)
}

func (j *jailResources) Pids() ([]int, error) {
	procs, err := j.procs()
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(procs))
	for _, p := range procs {
		pids = append(pids, p.Pid)
	}
	return pids, nil
}

// Freeze stops every process of the jail, again until none is left running: a process may fork
// between listing and stopping.
func (j *jailResources) Freeze() error {
	for range 10 {
		procs, err := j.procs()
		if err != nil {
			return err
		}
		running := 0
		for _, p := range procs {
			if !p.Stopped {
				running++
				if err := unix.Kill(p.Pid, unix.SIGSTOP); err != nil && err != unix.ESRCH {
					return fmt.Errorf("stop %d: %w", p.Pid, err)
				}
			}
		}
		if running == 0 {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return fmt.Errorf("jail %s: processes keep starting while stopping them", j.name)
}

func (j *jailResources) Thaw() error {
	procs, err := j.procs()
	if errors.Is(err, freebsd.ErrNoJail) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, p := range procs {
		if err := unix.Kill(p.Pid, unix.SIGCONT); err != nil && err != unix.ESRCH {
			return fmt.Errorf("continue %d: %w", p.Pid, err)
		}
	}
	return nil
}

func (j *jailResources) Frozen() (bool, error) {
	procs, err := j.procs()
	if err != nil {
		return false, err
	}
	for _, p := range procs {
		if !p.Stopped {
			return false, nil
		}
	}
	return len(procs) > 0, nil
}

func (j *jailResources) Update(r *specs.LinuxResources) error {
	rules, ignored, err := freebsd.Rules(j.name, r, j.spec.Annotations)
	if err != nil {
		return err
	}
	if len(ignored) > 0 {
		return fmt.Errorf("update: %v: no rctl counterpart on FreeBSD", ignored)
	}
	if len(rules) > 0 && !freebsd.RacctEnabled() {
		return freebsd.ErrRacctDisabled
	}
	for _, rule := range rules {
		if err := freebsd.AddRule(rule); err != nil {
			return err
		}
	}
	return nil
}

func (j *jailResources) Stats() (any, error) {
	usage, err := freebsd.Racct(j.name)
	if err != nil {
		return nil, err
	}
	rules, _, err := freebsd.Rules(j.name, linuxResources(j.spec), j.spec.Annotations)
	if err != nil {
		return nil, err
	}
	return freebsd.StatsFrom(usage, rules), nil
}

func (j *jailResources) OOMEvents(context.Context) (<-chan struct{}, error) {
	return nil, fmt.Errorf("out-of-memory events on FreeBSD: %w", errors.ErrUnsupported)
}
