// Package container owns the container lifecycle: create, start, run, kill, delete, state and list, the
// exec fifo that splits create from start, hooks run by the runtime, and status derived from the live
// process. Everything that differs per OS sits behind the backend interface (backend.go).
package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/spec"
	"github.com/knast/knast/internal/store"
)

// Sentinel errors callers branch on. Their texts are the phrases containerd and podman match.
var (
	ErrNotExist   = store.ErrNotExist
	ErrExist      = store.ErrExist
	ErrNotRunning = errors.New("container not running")
	ErrWrongState = errors.New("invalid state")
)

const fifoName = "exec.fifo"

// startMarker is the state-dir file ("<pid> <start time>\n" of the init) that lets knast's C start
// (package faststart) do a start before the Go runtime starts. Create writes it last, once the record
// says "created", and only when a start is nothing but the fifo handshake (no poststart hooks); start
// removes it with the fifo.
const startMarker = "created"

// DefaultRoot is where knast keeps state unless --root says otherwise.
const DefaultRoot = "/run/knast"

// statePaused is runc's status for a frozen container; the runtime-spec itself has no such state.
const statePaused specs.ContainerState = "paused"

// Manager runs containers under one state root.
type Manager struct {
	root    string
	store   *store.Store
	log     *slog.Logger
	backend backend
	net     Networker // nil: annotations asking for a network are not acted on
}

// New returns a Manager for root (e.g. /run/knast). It does no I/O.
func New(root string, log *slog.Logger) *Manager {
	return &Manager{root: root, store: store.Open(root, 10*time.Second), log: log, backend: newBackend(log, root)}
}

// Features reports what this runtime really supports on this OS.
func (m *Manager) Features() *features.Features { return m.backend.features() }

// Create creates container id from the bundle and returns once it is in state "created" with its pid file
// written. On any failure nothing is left behind.
func (m *Manager) Create(ctx context.Context, id string, o CreateOptions) (err error) {
	t0 := time.Now()
	defer func() { m.log.Debug("create", "id", id, "took", time.Since(t0), "err", err) }()
	if err := spec.ValidateID(id); err != nil {
		return err
	}
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	s, err := spec.Load(bundle)
	if err != nil {
		return err
	}
	if s.Process == nil {
		return errors.New("config.json: process: required to create a container")
	}
	if s.Process.Terminal && o.ConsoleSocket == "" {
		return errors.New("process.terminal is true: --console-socket is required")
	}
	rootfs := s.Root.Path
	if !filepath.IsAbs(rootfs) {
		rootfs = filepath.Join(bundle, rootfs)
	}
	if st, err := os.Stat(rootfs); err != nil {
		return fmt.Errorf("config.json: root.path: %w", err)
	} else if !st.IsDir() {
		return fmt.Errorf("config.json: root.path: %s is not a directory", rootfs)
	}
	absBindSources(s, bundle)
	cfg, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	stateDir := filepath.Join(m.root, id)
	rec := store.Container{
		ID: id, Bundle: bundle, Rootfs: rootfs, StateDir: stateDir, Status: "creating",
		Created: time.Now().UTC(), Owner: currentOwner(), Annotations: s.Annotations, Config: cfg,
	}
	if err := m.store.CreateContainer(ctx, rec); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			m.rollback(id, s, &rec)
		}
	}()
	// A state dir left by a crash of an earlier container with this ID is stale: the record was gone.
	os.RemoveAll(stateDir)
	if err := os.MkdirAll(stateDir, 0o711); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	fifo := filepath.Join(stateDir, fifoName)
	old := unix.Umask(0)
	err = unix.Mkfifo(fifo, 0o622)
	unix.Umask(old)
	if err != nil {
		return fmt.Errorf("create exec fifo: %w", err)
	}

	req := &createRequest{
		ID: id, Bundle: bundle, Rootfs: rootfs, StateDir: stateDir, FifoPath: fifo, Spec: s, Opts: o,
	}
	req.onPid = func(pid int) error {
		start, err := ProcStartTime(pid)
		if err != nil {
			return fmt.Errorf("container init %d: %w", pid, err)
		}
		rec.Pid, rec.PidStart = pid, start
		return m.store.UpdateContainer(ctx, id, func(c *store.Container) error {
			c.Pid, c.PidStart = pid, start
			return nil
		})
	}
	req.state = func() specs.State { return stateFor(&rec, specs.StateCreating) }
	req.runHooks = func(ctx context.Context, kind string, hooks []specs.Hook) error {
		st := stateFor(&rec, specs.StateCreating)
		if kind == "prestart" {
			// The deprecated prestart hooks were specified as running at start, on a created container;
			// clients written against that (and the runtime-tools suite) read "created".
			st.Status = specs.StateCreated
		}
		return RunHooks(ctx, kind, hooks, &st)
	}
	m.log.Debug("create: recorded", "id", id, "took", time.Since(t0))
	if err := m.backend.create(ctx, req); err != nil {
		if cur, gerr := m.store.Container(ctx, id); errors.Is(gerr, store.ErrNotExist) || (gerr == nil && !sameContainer(&cur, &rec)) {
			// Another client's delete --force removed the container midway (and maybe made a new one).
			m.log.Debug("create: deleted meanwhile", "id", id, "err", err)
			return fmt.Errorf("container %s was deleted during create: %w", id, store.ErrNotExist)
		}
		if vanished(err) && rec.Pid > 0 && exitsSoon(ctx, &rec) {
			// The init went away without a word: another client's kill got to it midway. That is a
			// state error, not a protocol failure.
			m.log.Debug("create: init gone", "id", id, "err", err)
			return fmt.Errorf("container %s: init was killed during create: %w", id, ErrNotRunning)
		}
		return err
	}
	if err := m.attachNetwork(ctx, id, rec.Pid, rootfs, s); err != nil {
		return err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, rec.Pid); err != nil {
			return err
		}
	}
	if err := m.store.UpdateContainer(ctx, id, func(c *store.Container) error {
		c.Status = string(specs.StateCreated)
		return nil
	}); err != nil {
		return err
	}
	if s.Hooks == nil || len(s.Hooks.Poststart) == 0 {
		// Atomic: the C start must never read half of it.
		if err := writeFileAtomic(filepath.Join(stateDir, startMarker), fmt.Appendf(nil, "%d %d\n", rec.Pid, rec.PidStart), 0o600); err != nil {
			return fmt.Errorf("start marker: %w", err)
		}
	}
	return nil
}

// vanished reports whether err says the other end went away without a word (EOF, reset, broken pipe).
func vanished(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET)
}

// rollback removes everything a failed create made. It runs with its own context: the create's may be done.
// mine is the record as this create made it: its init is killed whatever the store says now, but the
// rest (cgroup, state, record) is removed only while the store still holds this create's container —
// another client may have deleted it meanwhile and made a new one under the same ID.
func (m *Manager) rollback(id string, s *specs.Spec, mine *store.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if mine.Pid > 0 && ProcAlive(mine.Pid, mine.PidStart) {
		unix.Kill(mine.Pid, unix.SIGKILL)
		if err := WaitExit(ctx, mine.Pid, mine.PidStart); err != nil {
			m.log.Warn("rollback: wait for init", "id", id, "err", err)
		}
	}
	// A delete --force of this create's container may be at work: it finishes the teardown.
	rec, err := m.claimTeardown(ctx, id, mine, nil)
	if err != nil {
		return
	}
	m.killAndWait(ctx, &rec, s)
	if err := m.backend.destroy(ctx, &rec, s); err != nil {
		m.log.Warn("rollback", "id", id, "err", err)
	}
	m.detachNetwork(ctx, id, s.Annotations, true)
	os.RemoveAll(rec.StateDir)
	m.store.DeleteContainer(ctx, id, rec.Created)
}

// sameContainer reports whether two records of one ID describe the same container (not one deleted
// and another created under its ID meanwhile).
func sameContainer(a, b *store.Container) bool {
	return a.ID == b.ID && a.Created.UnixNano() == b.Created.UnixNano()
}

// exitsSoon reports whether the container's init is gone or goes within a moment: a killed process
// closes its sockets before /proc shows it dead.
func exitsSoon(ctx context.Context, rec *store.Container) bool {
	return exitsWithin(ctx, rec, 500*time.Millisecond)
}

func exitsWithin(ctx context.Context, rec *store.Container, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return WaitExit(ctx, rec.Pid, rec.PidStart) == nil
}

// Start runs the user process of a created container.
func (m *Manager) Start(ctx context.Context, id string) error { return m.start(ctx, id, nil, false) }

// FinishStart finishes a start whose exec-fifo handshake knast's C start (package faststart) did before
// the Go runtime started: answer is what it read from the fifo. Errors are the ones Start gives.
func (m *Manager) FinishStart(ctx context.Context, id string, answer []byte) error {
	return m.start(ctx, id, answer, true)
}

// start does the handshake itself unless handedOver: then answer is what the C start read.
func (m *Manager) start(ctx context.Context, id string, answer []byte, handedOver bool) error {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return err
	}
	fifo := filepath.Join(rec.StateDir, fifoName)
	if !handedOver {
		if st := m.status(&rec); st != specs.StateCreated {
			return fmt.Errorf("cannot start a container that is %s: %w", st, ErrWrongState)
		}
		answer, err = readFifo(ctx, fifo, &rec)
		if errors.Is(err, fs.ErrNotExist) {
			// The fifo went between the status check and the open: another client started or deleted
			// the container meanwhile. Say which, as a state error.
			now, gerr := m.store.Container(ctx, id)
			if gerr != nil {
				return gerr
			}
			return fmt.Errorf("cannot start a container that is %s: %w", m.status(&now), ErrWrongState)
		}
		if err != nil {
			return err
		}
	}
	if err := fifoAnswer(id, answer); err != nil {
		return err
	}
	// No record update: with the fifo gone and the init alive, status reads "running" (see status), and
	// a write transaction would cost the start a second database open.
	os.Remove(fifo)
	os.Remove(filepath.Join(rec.StateDir, startMarker))
	s, err := recLifecycleSpec(&rec)
	if err != nil {
		return err
	}
	if s.Hooks != nil && len(s.Hooks.Poststart) > 0 {
		st := stateFor(&rec, specs.StateRunning)
		m.runHooksWarn(ctx, "poststart", s.Hooks.Poststart, &st)
	}
	return nil
}

// runHooksWarn runs poststart and poststop hooks: the runtime-spec says a failing one is logged as a
// warning and the remaining hooks and the lifecycle go on as if it had succeeded.
func (m *Manager) runHooksWarn(ctx context.Context, kind string, hooks []specs.Hook, st *specs.State) {
	for i := range hooks {
		if err := RunHooks(ctx, kind, hooks[i:i+1], st); err != nil {
			m.log.Warn(kind+" hook failed", "id", st.ID, "hook", i, "err", err)
		}
	}
}

// readFifo opens the exec fifo for reading, which releases the init blocked opening it for writing, and
// returns the init's answer (see fifoAnswer) once the init closes its end: when it execs (the fifo is
// close-on-exec) or exits.
func readFifo(ctx context.Context, fifo string, rec *store.Container) ([]byte, error) {
	fd, err := unix.Open(fifo, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open exec fifo: %w", err)
	}
	defer unix.Close(fd)
	var got []byte
	buf := make([]byte, 4096)
	for {
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(pfd, 20)
		if err != nil && err != unix.EINTR {
			return nil, fmt.Errorf("poll exec fifo: %w", err)
		}
		if n > 0 {
			r, err := unix.Read(fd, buf)
			if r > 0 {
				got = append(got, buf[:r]...)
				continue
			}
			if err == unix.EAGAIN {
				continue
			}
			return got, nil // EOF
		}
		// A reader that opened the fifo after the init's writer did (another start released the init)
		// is never told of the writer's close: look at the init instead. Once it has exec'd or exited,
		// what is in the fifo is all there is.
		alive := ProcAlive(rec.Pid, rec.PidStart)
		if _, err := os.Lstat(fifo); !alive || errors.Is(err, fs.ErrNotExist) || initExeced(rec.Pid) {
			for {
				r, _ := unix.Read(fd, buf)
				if r <= 0 {
					break
				}
				got = append(got, buf[:r]...)
			}
			if len(got) == 0 && !alive {
				return nil, fmt.Errorf("container %s: init exited before start: %w", rec.ID, ErrNotRunning)
			}
			return got, nil
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
}

// fifoAnswer turns the init's answer on the exec fifo into the start's result: "0", then an error text
// if startContainer hooks or the exec failed.
func fifoAnswer(id string, got []byte) error {
	if len(got) == 0 {
		// The init is alive but its byte went to another reader: a concurrent start won the race.
		return fmt.Errorf("cannot start a container that is %s: %w", specs.StateRunning, ErrWrongState)
	}
	if got[0] != '0' {
		return fmt.Errorf("container %s: init did not start", id)
	}
	if len(got) > 1 {
		return fmt.Errorf("container %s: %s", id, got[1:])
	}
	return nil
}

// Kill sends sig to the container's init, or with all to every process of the container.
func (m *Manager) Kill(ctx context.Context, id string, sig unix.Signal, all bool) error {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return err
	}
	st := m.status(&rec)
	if st == specs.StateStopped {
		if all {
			return nil // runc: kill --all of a stopped container succeeds
		}
		return fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	if rec.Pid <= 0 {
		// Still being created: there is no init to signal yet, and kill(0) would hit knast's own group.
		return fmt.Errorf("container %s is being created: %w", id, ErrNotRunning)
	}
	s, err := recLifecycleSpec(&rec)
	if err != nil {
		return err
	}
	if all {
		err = m.signalAll(&rec, s, sig)
	} else if err = unix.Kill(rec.Pid, sig); err != nil {
		err = fmt.Errorf("kill container %s: %w", id, err)
	}
	if err == nil && sig == unix.SIGKILL && st == statePaused {
		// A frozen process cannot act on SIGKILL: thaw so the kill takes effect now, as runc does.
		m.thaw(&rec, s)
	}
	return err
}

// thaw unfreezes the container's processes, best effort: used when killing a paused container.
func (m *Manager) thaw(rec *store.Container, s *specs.Spec) {
	rc, err := m.backend.resources(rec, s)
	if err == nil {
		err = rc.Thaw()
	}
	if err != nil {
		m.log.Warn("thaw", "id", rec.ID, "err", err)
	}
}

func (m *Manager) signalAll(rec *store.Container, s *specs.Spec, sig unix.Signal) error {
	pids, err := m.backend.processes(rec, s)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		if pid <= 0 {
			continue // never a process group or every process
		}
		if err := unix.Kill(pid, sig); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill %d: %w", pid, err)
		}
	}
	return nil
}

// killAndWait SIGKILLs every process of the container and waits for the init to be gone.
func (m *Manager) killAndWait(ctx context.Context, rec *store.Container, s *specs.Spec) {
	if rec.Pid == 0 || !ProcAlive(rec.Pid, rec.PidStart) {
		return
	}
	if err := m.signalAll(rec, s, unix.SIGKILL); err != nil {
		m.log.Warn("kill", "id", rec.ID, "err", err)
	}
	unix.Kill(rec.Pid, unix.SIGKILL)
	// Frozen processes die only once thawed; thawing a cgroup that is not frozen is harmless.
	if s != nil {
		m.thaw(rec, s)
	}
	if err := WaitExit(ctx, rec.Pid, rec.PidStart); err != nil {
		m.log.Warn("wait for init", "id", rec.ID, "err", err)
	}
}

// Delete removes a container. A created one is killed first (as runc does); a running one only with force.
// With force, a missing container is not an error.
func (m *Manager) Delete(ctx context.Context, id string, force bool) error {
	var s *specs.Spec
	rec, err := m.claimTeardown(ctx, id, nil, func(c *store.Container) error {
		var err error
		if s, err = recLifecycleSpec(c); err != nil && !force {
			return err
		}
		switch st := m.status(c); {
		case st == specs.StateStopped, st == specs.StateCreated, force:
			return nil
		default:
			return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
		}
	})
	if err != nil {
		if errors.Is(err, errTornDown) {
			// Gone, or deleted by another client meanwhile: what was asked is done.
			if force {
				return nil
			}
			return fmt.Errorf("container %q: %w", id, store.ErrNotExist)
		}
		return err
	}
	m.killAndWait(ctx, &rec, s)
	if err := m.backend.destroy(ctx, &rec, s); err != nil {
		return err
	}
	if err := m.cleanupBundle(&rec, s, force); err != nil {
		return err
	}
	if err := m.detachNetwork(ctx, id, rec.Annotations, force); err != nil {
		return err
	}
	if s != nil && s.Hooks != nil && rec.Status != "creating" {
		state := stateFor(&rec, specs.StateStopped)
		m.runHooksWarn(ctx, "poststop", s.Hooks.Poststop, &state)
	}
	if err := os.RemoveAll(rec.StateDir); err != nil {
		return fmt.Errorf("remove state dir: %w", err)
	}
	if err := m.store.DeleteContainer(ctx, id, rec.Created); err != nil && !errors.Is(err, store.ErrNotExist) {
		return err
	}
	return nil
}

// errTornDown says the container a teardown was for is gone: deleted by another client, or replaced
// by a new one under its ID.
var errTornDown = errors.New("deleted meanwhile")

// claimTeardown makes this process the one that tears container id down and returns its record. The
// state dir and cgroup of an ID are shared by every container ever created under it, so a second client
// tearing down the same container could otherwise still be removing them after the first deleted the
// record and a new container took the ID. check runs on the record inside the claiming transaction (an
// error aborts the claim and is returned). While a live process holds the claim, it waits for that one to
// finish (errTornDown) or die (then it takes over, as after a crash). pin, or else the first record seen,
// is the incarnation claimed: a later one under the same ID is errTornDown.
func (m *Manager) claimTeardown(ctx context.Context, id string, pin *store.Container, check func(*store.Container) error) (store.Container, error) {
	self := os.Getpid()
	selfStart, err := ProcStartTime(self)
	if err != nil {
		return store.Container{}, fmt.Errorf("container %s: own start time: %w", id, err)
	}
	errBusy := errors.New("being deleted")
	var got store.Container
	for {
		err := m.store.UpdateContainer(ctx, id, func(c *store.Container) error {
			if pin != nil && !sameContainer(c, pin) {
				return errTornDown
			}
			if check != nil {
				if err := check(c); err != nil {
					return err
				}
			}
			if c.Deleter != 0 && c.Deleter != self && ProcAlive(c.Deleter, c.DeleterStart) {
				seen := *c
				pin = &seen
				return errBusy
			}
			c.Deleter, c.DeleterStart = self, selfStart
			got = *c
			return nil
		})
		switch {
		case err == nil:
			return got, nil
		case errors.Is(err, store.ErrNotExist):
			return got, errTornDown
		case !errors.Is(err, errBusy):
			return got, err
		}
		select {
		case <-ctx.Done():
			return got, fmt.Errorf("container %s is being deleted by another process: %w", id, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// State returns the runtime-spec state of a container.
func (m *Manager) State(ctx context.Context, id string) (*State, error) {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return nil, err
	}
	st := m.stateOf(&rec)
	return &st, nil
}

// List returns the state of every container, sorted by ID.
func (m *Manager) List(ctx context.Context) ([]State, error) {
	recs, err := m.store.Containers(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]State, 0, len(recs))
	for i := range recs {
		out = append(out, m.stateOf(&recs[i]))
	}
	return out, nil
}

// status derives the container's status from its record and the live process: the record alone can lie
// after a crash, and a pid alone can be reused, so the pid's start time must match too.
func (m *Manager) status(rec *store.Container) specs.ContainerState {
	if rec.Pid == 0 {
		if rec.Status == "creating" {
			return specs.StateCreating
		}
		return specs.StateStopped
	}
	if !ProcAlive(rec.Pid, rec.PidStart) {
		return specs.StateStopped
	}
	if rec.Status == "creating" {
		return specs.StateCreating
	}
	if _, err := os.Lstat(filepath.Join(rec.StateDir, fifoName)); err == nil {
		return specs.StateCreated
	}
	// Only pause records "paused"; the freezer is asked only then, keeping status cheap.
	if rec.Status == string(statePaused) {
		if s, err := recLifecycleSpec(rec); err == nil {
			if rc, err := m.backend.resources(rec, s); err == nil {
				if frozen, err := rc.Frozen(); err == nil && frozen {
					return statePaused
				}
			}
		}
	}
	return specs.StateRunning
}

// absBindSources makes relative bind-mount sources relative to the bundle, as runc does; the init must
// not depend on its working directory.
func absBindSources(s *specs.Spec, bundle string) {
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if m.Source == "" || filepath.IsAbs(m.Source) {
			continue
		}
		if m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind") {
			m.Source = filepath.Join(bundle, m.Source)
		}
	}
}

func recSpec(rec *store.Container) (*specs.Spec, error) {
	var s specs.Spec
	if err := json.Unmarshal(rec.Config, &s); err != nil {
		return nil, fmt.Errorf("container %s: stored config: %w", rec.ID, err)
	}
	return &s, nil
}

// lifecycleSpec is the part of a stored config that start, kill, delete and status read: hooks, the
// cgroup path, the namespaces, annotations and the FreeBSD jail. Decoding only these keeps a fresh knast
// process from paying encoding/json's first-use reflection over the whole spec (about a millisecond,
// a tenth of a `knast start`); a config that decodes as a whole decodes as this too.
type lifecycleSpec struct {
	Root        *specs.Root       `json:"root,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *struct {
		CgroupsPath string                 `json:"cgroupsPath,omitempty"`
		Namespaces  []specs.LinuxNamespace `json:"namespaces,omitempty"`
	} `json:"linux,omitempty"`
	// FreeBSD is decoded only when present: its types would otherwise join the first-use cost on Linux.
	FreeBSD json.RawMessage `json:"freebsd,omitempty"`
}

// recLifecycleSpec decodes the lifecycleSpec fields of the stored config into a Spec that has only
// those set.
func recLifecycleSpec(rec *store.Container) (*specs.Spec, error) {
	var l lifecycleSpec
	if err := json.Unmarshal(rec.Config, &l); err != nil {
		return nil, fmt.Errorf("container %s: stored config: %w", rec.ID, err)
	}
	s := &specs.Spec{Root: l.Root, Hooks: l.Hooks, Annotations: l.Annotations}
	if len(l.FreeBSD) > 0 && string(l.FreeBSD) != "null" {
		s.FreeBSD = new(specs.FreeBSD)
		if err := json.Unmarshal(l.FreeBSD, s.FreeBSD); err != nil {
			return nil, fmt.Errorf("container %s: stored config: freebsd: %w", rec.ID, err)
		}
	}
	if l.Linux != nil {
		s.Linux = &specs.Linux{CgroupsPath: l.Linux.CgroupsPath, Namespaces: l.Linux.Namespaces}
	}
	return s, nil
}

func writePidFile(path string, pid int) error {
	if err := writeFileAtomic(path, []byte(fmt.Sprint(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// writeFileAtomic writes data to a hidden temp file beside path and renames it into place, so a reader
// sees the whole file or none.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

func currentOwner() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return fmt.Sprint(os.Getuid())
}
