//go:build linux

package linux

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// SpawnConfig describes the knast child that Spawn starts.
type SpawnConfig struct {
	Args []string // argv after the binary, e.g. {"init"}; argv[0] is "knast"
	Env  []string // base environment; Spawn drops any _KNAST_* entry and adds its own

	Join []specs.LinuxNamespace     // namespaces with a Path, joined before the Go runtime starts
	New  []specs.LinuxNamespaceType // namespaces created after joining

	// UIDMappings and GIDMappings are written by Spawn when New has user.
	UIDMappings, GIDMappings []specs.LinuxIDMapping
	SetgroupsDeny            bool                             // write "deny" to setgroups of a new user namespace
	TimeOffsets              map[string]specs.LinuxTimeOffset // "monotonic"/"boottime"; needs New time

	Stdin, Stdout, Stderr *os.File   // nil means /dev/null
	ExtraFiles            []*os.File // child fds 3..; the sync socket follows at 3+len(ExtraFiles)
	Cgroup                *os.File   // optional cgroup v2 directory the child is cloned into

	// CgroupV1 are cgroup v1 directories the child joins itself, first thing in the C phase while it
	// is one thread, by writing 0 to each "tasks" file. Unlike a parent writing the pid to cgroup.procs,
	// that takes no global lock and waits for no RCU grace period (milliseconds per hierarchy).
	CgroupV1 []string

	// Gate, when set, holds the child at the start of its C phase (before it joins the v1 cgroups or
	// any namespace) until Gate returns: the caller finishes work the child must not start without,
	// such as the cgroups' limits, while the child is exec'd. An error kills the child.
	Gate func() error
}

// Process is a child started by Spawn.
type Process struct {
	Pid  int      // the final process (after any fork), as the host sees it
	Sync *os.File // parent end of the sync socket; the Go-level init protocol continues on it
}

// Environment of the child's C phase (see nsenter/nsenter_linux.c).
const (
	spawnEnvPrefix   = "_KNAST_"
	spawnEnvNsenter  = "_KNAST_NSENTER"
	spawnEnvSyncFD   = "_KNAST_SYNCFD"
	spawnEnvJoin     = "_KNAST_JOIN"
	spawnEnvUnshare  = "_KNAST_UNSHARE"
	spawnEnvOffsets  = "_KNAST_TIMEOFFSETS"
	spawnEnvDenySetg = "_KNAST_SETGROUPS_DENY"
	spawnEnvCgroupV1 = "_KNAST_CGROUP_V1"
	spawnEnvGate     = "_KNAST_GATE"
)

// Wire format of the C phase on the sync socket: one tag byte, a payload
// without '\n', then '\n' (documented in full in nsenter_linux.c).
const (
	spawnTagMaps  = 'U' // child: new user namespace exists, write its maps
	spawnTagPid   = 'P' // child: final pid follows; last message of the C phase
	spawnTagError = 'E' // child: error text follows; the child exits 1
	spawnTagAck   = 'A' // parent: maps written
	spawnTagGo    = 'G' // parent: the gate is open (SpawnConfig.Gate)
	spawnMaxLine  = 4096
)

// spawnCloneFlag maps a runtime-spec namespace type to its CLONE_NEW* flag.
func spawnCloneFlag(t specs.LinuxNamespaceType) (int, error) {
	switch t {
	case specs.UserNamespace:
		return unix.CLONE_NEWUSER, nil
	case specs.MountNamespace:
		return unix.CLONE_NEWNS, nil
	case specs.PIDNamespace:
		return unix.CLONE_NEWPID, nil
	case specs.NetworkNamespace:
		return unix.CLONE_NEWNET, nil
	case specs.IPCNamespace:
		return unix.CLONE_NEWIPC, nil
	case specs.UTSNamespace:
		return unix.CLONE_NEWUTS, nil
	case specs.CgroupNamespace:
		return unix.CLONE_NEWCGROUP, nil
	case specs.TimeNamespace:
		return unix.CLONE_NEWTIME, nil
	}
	return 0, fmt.Errorf("namespace type %q: unknown", t)
}

// spawnPlan is the checked, encoded form of a SpawnConfig's namespace work.
type spawnPlan struct {
	env     []string // _KNAST_* entries except the sync fd
	newUser bool
	forks   bool // the C phase forks: the final process is a grandchild
}

func spawnMakePlan(c SpawnConfig) (spawnPlan, error) {
	var p spawnPlan
	seen := map[specs.LinuxNamespaceType]string{}
	var join strings.Builder
	for _, ns := range c.Join {
		if _, err := spawnCloneFlag(ns.Type); err != nil {
			return p, err
		}
		if ns.Path == "" || strings.ContainsAny(ns.Path, "\n\x00") {
			return p, fmt.Errorf("namespace %s: bad path %q", ns.Type, ns.Path)
		}
		if _, dup := seen[ns.Type]; dup {
			return p, fmt.Errorf("namespace %s: listed twice", ns.Type)
		}
		seen[ns.Type] = "joined"
		fmt.Fprintf(&join, "%s=%s\n", ns.Type, ns.Path)
		if ns.Type == specs.PIDNamespace {
			p.forks = true
		}
	}
	flags := 0
	for _, t := range c.New {
		f, err := spawnCloneFlag(t)
		if err != nil {
			return p, err
		}
		if how, dup := seen[t]; dup {
			return p, fmt.Errorf("namespace %s: both %s and created", t, how)
		}
		seen[t] = "created"
		flags |= f
	}
	p.newUser = flags&unix.CLONE_NEWUSER != 0
	p.forks = p.forks || flags&(unix.CLONE_NEWPID|unix.CLONE_NEWTIME) != 0
	if p.newUser && (len(c.UIDMappings) == 0 || len(c.GIDMappings) == 0) {
		return p, errors.New("new user namespace: uid and gid mappings are required")
	}
	var offsets strings.Builder
	for _, clock := range slices.Sorted(maps.Keys(c.TimeOffsets)) {
		if clock != "monotonic" && clock != "boottime" {
			return p, fmt.Errorf("time offset %q: unknown clock (want monotonic or boottime)", clock)
		}
		o := c.TimeOffsets[clock]
		fmt.Fprintf(&offsets, "%s %d %d\n", clock, o.Secs, o.Nanosecs)
	}
	if offsets.Len() > 0 && flags&unix.CLONE_NEWTIME == 0 {
		return p, errors.New("time offsets need a new time namespace")
	}

	var cgroups strings.Builder
	for _, d := range c.CgroupV1 {
		if !strings.HasPrefix(d, "/") || strings.ContainsAny(d, "\n\x00") {
			return p, fmt.Errorf("cgroup directory %q: want an absolute path without newlines", d)
		}
		cgroups.WriteString(d + "\n")
	}

	p.env = []string{spawnEnvNsenter + "=1"}
	if cgroups.Len() > 0 {
		p.env = append(p.env, spawnEnvCgroupV1+"="+cgroups.String())
	}
	if c.Gate != nil {
		p.env = append(p.env, spawnEnvGate+"=1")
	}
	if join.Len() > 0 {
		p.env = append(p.env, spawnEnvJoin+"="+join.String())
	}
	if flags != 0 {
		p.env = append(p.env, spawnEnvUnshare+"="+strconv.Itoa(flags))
	}
	if offsets.Len() > 0 {
		p.env = append(p.env, spawnEnvOffsets+"="+offsets.String())
	}
	if p.newUser && c.SetgroupsDeny {
		p.env = append(p.env, spawnEnvDenySetg+"=1")
	}
	return p, nil
}

// Spawn starts `knast <Args>` from a sealed memfd copy of the running binary,
// lets the nsenter constructor join and create the namespaces, and returns
// once that C phase is done and the final pid is known. On any error, or if
// ctx ends first, everything started is killed and reaped.
//
// The calling process becomes a child subreaper, so a final process forked
// by the C phase is reparented to it and can be wait4()ed. The child gets
// Pdeathsig SIGKILL for the C phase only: the final process must outlive
// `knast create`, so it has none (a fork clears it; without a fork the
// constructor does). Once Spawn returns, the final process learns of the
// caller's death by EOF on the sync socket.
func Spawn(ctx context.Context, c SpawnConfig) (*Process, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	plan, err := spawnMakePlan(c)
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return nil, fmt.Errorf("spawn: become child subreaper: %w", err)
	}
	exe, err := sealedExe()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	defer exe.Close()
	parentEnd, childEnd, err := spawnSocketpair()
	if err != nil {
		return nil, fmt.Errorf("spawn: %w", err)
	}
	defer childEnd.Close()

	stdio := []*os.File{c.Stdin, c.Stdout, c.Stderr}
	for i, f := range stdio {
		if f != nil {
			continue
		}
		null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err != nil {
			parentEnd.Close()
			return nil, fmt.Errorf("spawn: %w", err)
		}
		defer null.Close()
		stdio[i] = null
	}

	// exec.Cmd and os.StartProcess renumber the files into 0..n-1 in the
	// child, so the memfd's fd number in the parent means nothing there. It
	// is passed as the last file and executed as /proc/self/fd/<its child
	// number>, which /proc resolves in the child after the renumbering. The
	// dup clears close-on-exec, so the constructor closes it (and any other
	// fd above the sync socket) first thing.
	files := slices.Concat(stdio, c.ExtraFiles, []*os.File{childEnd, exe})
	syncFD := 3 + len(c.ExtraFiles)
	exeFD := syncFD + 1
	env := slices.DeleteFunc(slices.Clone(c.Env), func(e string) bool { return strings.HasPrefix(e, spawnEnvPrefix) })
	env = append(append(env, plan.env...), spawnEnvSyncFD+"="+strconv.Itoa(syncFD))
	// The init runs in the container's cgroup, where every thread counts against pids.max: one P keeps
	// the Go runtime to a handful of threads (a tight pids limit must not abort the init), and the init
	// has no parallel work. The container's process gets its own environment from the config.
	if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, "GOMAXPROCS=") }) {
		env = append(env, "GOMAXPROCS=1")
	}
	sys := &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if c.Cgroup != nil {
		sys.UseCgroupFD = true
		sys.CgroupFD = int(c.Cgroup.Fd())
	}
	proc, err := os.StartProcess("/proc/self/fd/"+strconv.Itoa(exeFD), append([]string{"knast"}, c.Args...),
		&os.ProcAttr{Env: env, Files: files, Sys: sys})
	if err != nil {
		parentEnd.Close()
		return nil, fmt.Errorf("spawn: start: %w", err)
	}
	childEnd.Close() // so the child's death reads as EOF
	if c.Gate != nil {
		err := c.Gate()
		if err == nil {
			_, err = parentEnd.Write([]byte{spawnTagGo, '\n'})
		}
		if err != nil {
			spawnCleanup(proc, 0)
			parentEnd.Close()
			return nil, err
		}
	}

	// Killing the direct child unblocks every wait of the C phase: its death
	// closes the socket, or (after a fork) the gate the final process waits on.
	stop := context.AfterFunc(ctx, func() { _ = proc.Kill() })
	pid, err := spawnHandshake(parentEnd, proc.Pid, c)
	if !stop() {
		err = context.Cause(ctx)
	}
	if err == nil && plan.forks {
		err = spawnWaitIntermediate(proc)
	} else if err == nil && pid != proc.Pid {
		err = fmt.Errorf("child reported pid %d, started as %d", pid, proc.Pid)
	}
	if err != nil {
		st := spawnCleanup(proc, pid)
		parentEnd.Close()
		if errors.Is(err, spawnErrEarlyExit) && st != nil {
			err = fmt.Errorf("%w (%s)", err, st)
		}
		return nil, fmt.Errorf("spawn: %w", err)
	}
	if !plan.forks {
		_ = proc.Release() // the caller wait4()s the pid itself
	}
	return &Process{Pid: pid, Sync: parentEnd}, nil
}

// spawnSocketpair returns the two ends of the sync socket. The parent end is
// non-blocking, so os.File uses the poller and callers can set deadlines; the
// child's end stays blocking for the C code.
func spawnSocketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "sync"), os.NewFile(uintptr(fds[1]), "sync-child"), nil
}

// spawnErrEarlyExit means the sync socket closed during the C phase.
var spawnErrEarlyExit = errors.New("child exited before reporting its pid")

// spawnHandshake runs the parent side of the C phase and returns the final
// pid. A zero pid means it was never reported.
func spawnHandshake(sync *os.File, childPid int, c SpawnConfig) (int, error) {
	for {
		tag, payload, err := spawnReadMsg(sync)
		if errors.Is(err, io.EOF) {
			return 0, spawnErrEarlyExit
		}
		if err != nil {
			return 0, err
		}
		switch tag {
		case spawnTagMaps:
			if err := spawnWriteMaps(childPid, c); err != nil {
				return 0, err
			}
			if _, err := sync.Write([]byte{spawnTagAck, '\n'}); err != nil {
				return 0, fmt.Errorf("ack id maps: %w", err)
			}
		case spawnTagPid:
			pid, err := strconv.Atoi(payload)
			if err != nil || pid <= 0 {
				return 0, fmt.Errorf("child reported bad pid %q", payload)
			}
			return pid, nil
		case spawnTagError:
			return 0, errors.New(payload)
		default:
			return 0, fmt.Errorf("unexpected message %q from child", string(tag)+payload)
		}
	}
}

// spawnReadMsg reads one "<tag><payload>\n" message a byte at a time: the
// Go-level protocol that follows on the same stream must not be consumed.
func spawnReadMsg(r io.Reader) (byte, string, error) {
	var line []byte
	b := make([]byte, 1)
	for len(line) < spawnMaxLine {
		n, err := r.Read(b)
		if n == 1 {
			if b[0] == '\n' {
				if len(line) == 0 {
					return 0, "", errors.New("empty message from child")
				}
				return line[0], string(line[1:]), nil
			}
			line = append(line, b[0])
			continue
		}
		if errors.Is(err, io.EOF) && len(line) > 0 {
			return 0, "", fmt.Errorf("read sync socket: %w", io.ErrUnexpectedEOF)
		}
		if errors.Is(err, io.EOF) {
			return 0, "", io.EOF
		}
		if err != nil {
			return 0, "", fmt.Errorf("read sync socket: %w", err)
		}
	}
	return 0, "", fmt.Errorf("message from child longer than %d bytes", spawnMaxLine)
}

// spawnWriteMaps writes the id maps of the child's new user namespace. Each
// map must be a single write(2).
func spawnWriteMaps(pid int, c SpawnConfig) error {
	for _, m := range []struct {
		file string
		ids  []specs.LinuxIDMapping
	}{{"uid_map", c.UIDMappings}, {"gid_map", c.GIDMappings}} {
		var b strings.Builder
		for _, id := range m.ids {
			fmt.Fprintf(&b, "%d %d %d\n", id.ContainerID, id.HostID, id.Size)
		}
		path := fmt.Sprintf("/proc/%d/%s", pid, m.file)
		f, err := os.OpenFile(path, os.O_WRONLY, 0)
		if err != nil {
			return fmt.Errorf("write %s: %w", m.file, err)
		}
		_, err = f.Write([]byte(b.String()))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write %s %q: %w", path, b.String(), err)
		}
	}
	return nil
}

// spawnWaitIntermediate reaps the process that forked the final one.
func spawnWaitIntermediate(proc *os.Process) error {
	st, err := proc.Wait()
	if err != nil {
		return fmt.Errorf("wait for intermediate process: %w", err)
	}
	if !st.Success() {
		return fmt.Errorf("intermediate process: %s", st)
	}
	return nil
}

// spawnCleanup kills and reaps the direct child and, if known, the final
// process. The direct child goes first: once it is reaped, the final process
// has been reparented to us (we are a subreaper) and can be waited for.
func spawnCleanup(proc *os.Process, final int) *os.ProcessState {
	_ = proc.Kill()
	st, _ := proc.Wait()
	if final > 0 && final != proc.Pid {
		_ = unix.Kill(final, unix.SIGKILL)
		for {
			_, err := unix.Wait4(final, nil, 0, nil)
			if !errors.Is(err, unix.EINTR) {
				break
			}
		}
	}
	return st
}

// ChildSync returns the child end of the sync socket in a process started by
// Spawn (fd $_KNAST_SYNCFD), after the C phase. It removes the variable from
// the environment and marks the fd close-on-exec, so neither reaches the
// container process.
func ChildSync() (*os.File, error) {
	v, ok := os.LookupEnv(spawnEnvSyncFD)
	if !ok {
		return nil, fmt.Errorf("sync socket: $%s is not set (not started by Spawn)", spawnEnvSyncFD)
	}
	if err := os.Unsetenv(spawnEnvSyncFD); err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("sync socket: bad $%s %q", spawnEnvSyncFD, v)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("sync socket: fd %d: %w", fd, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return nil, fmt.Errorf("sync socket: fd %d is not a socket", fd)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "sync")
	if _, ok := os.LookupEnv(spawnEnvNsenter); ok {
		// The constructor would have removed it: this binary lacks the
		// nsenter package (or cgo), so no namespace was joined or created.
		err := errors.New("nsenter constructor did not run (binary built without cgo or without the nsenter import)")
		_, _ = f.Write([]byte(string(spawnTagError) + err.Error() + "\n"))
		f.Close()
		return nil, fmt.Errorf("sync socket: %w", err)
	}
	return f, nil
}
