//go:build linux && cgo

package seccomp

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/spec"
)

const (
	childEnv = "KNAST_SECCOMP_TEST_CHILD"
	busybox  = "/usr/bin/busybox"
)

// childPlan is what the re-executed test binary does: compile and load Profile, hand a notify fd to
// Listener, then exec Args or perform the named syscall and report its result on stdout.
type childPlan struct {
	Profile  *specs.LinuxSeccomp
	Metadata string
	Args     []string // exec these after loading
	Syscall  string   // or perform this (see doSyscall)
	Arg0     uint64
	Arg1     uint64
	Dir      string
}

type childResult struct {
	Ret   uintptr
	Errno int
}

func TestMain(m *testing.M) {
	if plan := os.Getenv(childEnv); plan != "" {
		os.Exit(runChild(plan))
	}
	os.Exit(m.Run())
}

func runChild(planJSON string) int {
	var p childPlan
	if err := json.Unmarshal([]byte(planJSON), &p); err != nil {
		fmt.Fprintln(os.Stderr, "child: decode plan:", err)
		return 10
	}
	// The filter goes on this thread; the syscall or exec below runs on it too.
	runtime.LockOSThread()
	other := startOtherThread(p)
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "child: no_new_privs:", err)
		return 11
	}
	f, err := Prepare(p.Profile)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: prepare:", err)
		return 12
	}
	fd, err := f.Load()
	if err != nil {
		fmt.Fprintln(os.Stderr, "child: load:", err)
		return 13
	}
	if fd >= 0 {
		pid := os.Getpid()
		st := specs.ContainerProcessState{Pid: pid, Metadata: p.Metadata, State: specs.State{
			Version: specs.Version, ID: "seccomp-test", Status: specs.StateCreating, Pid: pid, Bundle: "/bundle",
		}}
		if err := SendNotifyFd(p.Profile.ListenerPath, fd, st); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			return 14
		}
		unix.Close(fd)
	}
	if len(p.Args) > 0 {
		err := unix.Exec(p.Args[0], p.Args, os.Environ())
		fmt.Fprintln(os.Stderr, "child: exec:", err)
		return 15
	}
	var res childResult
	if p.Syscall == "mkdirat-other-thread" {
		res = <-other
	} else {
		res = doSyscall(p)
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		return 16
	}
	return 0
}

// startOtherThread starts, before the filter exists, a thread that runs mkdirat once told to: threads
// created later could inherit the filter from the filtered thread and prove nothing about TSYNC.
func startOtherThread(p childPlan) chan childResult {
	out := make(chan childResult, 1)
	if p.Syscall != "mkdirat-other-thread" {
		return out
	}
	ready, run := make(chan struct{}), make(chan struct{})
	go func() {
		runtime.LockOSThread()
		close(ready)
		<-run
		p.Syscall = "mkdirat"
		out <- doSyscall(p)
	}()
	<-ready
	go func() { time.Sleep(200 * time.Millisecond); close(run) }()
	return out
}

func doSyscall(p childPlan) childResult {
	var r uintptr
	var errno syscall.Errno
	switch p.Syscall {
	case "mkdirat":
		path, _ := unix.BytePtrFromString(filepath.Join(p.Dir, "x"))
		atFdcwd := unix.AT_FDCWD
		r, _, errno = unix.Syscall(unix.SYS_MKDIRAT, uintptr(atFdcwd), uintptr(unsafe.Pointer(path)), 0o700)
	case "personality":
		r, _, errno = unix.Syscall(unix.SYS_PERSONALITY, uintptr(p.Arg0), 0, 0)
	case "ioprio_get":
		r, _, errno = unix.Syscall(unix.SYS_IOPRIO_GET, uintptr(p.Arg0), uintptr(p.Arg1), 0)
	case "unshare":
		r, _, errno = unix.Syscall(unix.SYS_UNSHARE, uintptr(p.Arg0), 0, 0)
	case "clone":
		// Expected to be refused; should it pass, the copy exits at once without touching Go state.
		r, _, errno = unix.RawSyscall6(unix.SYS_CLONE, uintptr(p.Arg0)|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
		if r == 0 && errno == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
	case "clone3":
		r, _, errno = unix.Syscall(unix.SYS_CLONE3, 0, 0, 0)
	case "mount":
		src, _ := unix.BytePtrFromString("none")
		dst, _ := unix.BytePtrFromString(filepath.Join(p.Dir, "does-not-exist"))
		typ, _ := unix.BytePtrFromString("tmpfs")
		r, _, errno = unix.Syscall6(unix.SYS_MOUNT, uintptr(unsafe.Pointer(src)), uintptr(unsafe.Pointer(dst)),
			uintptr(unsafe.Pointer(typ)), 0, 0, 0)
	default:
		return childResult{Errno: -1}
	}
	return childResult{Ret: r, Errno: int(errno)}
}

type childOutcome struct {
	res    childResult
	stdout string
	stderr string
	status syscall.WaitStatus
}

func runChildPlan(t *testing.T, p childPlan) childOutcome {
	t.Helper()
	plan, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(plan))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("run child: %v", err)
	}
	o := childOutcome{stdout: stdout.String(), stderr: stderr.String(),
		status: cmd.ProcessState.Sys().(syscall.WaitStatus)}
	if p.Syscall != "" && o.status.Exited() && o.status.ExitStatus() == 0 {
		if err := json.Unmarshal(stdout.Bytes(), &o.res); err != nil {
			t.Fatalf("child result %q: %v", stdout.String(), err)
		}
	}
	return o
}

func uptr(v uint) *uint { return &v }

func allowAllBut(rules ...specs.LinuxSyscall) *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: rules}
}

func deny(act specs.LinuxSeccompAction, errnoRet *uint, names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: names, Action: act, ErrnoRet: errnoRet}
}

// TestSyscallActions performs a syscall in a child under a profile and checks what the kernel made of it.
func TestSyscallActions(t *testing.T) {
	exdev := uptr(uint(unix.EXDEV))
	ioprio := func(op specs.LinuxSeccompOperator, v, v2 uint64) *specs.LinuxSeccomp {
		return allowAllBut(specs.LinuxSyscall{Names: []string{"ioprio_get"}, Action: specs.ActErrno, ErrnoRet: exdev,
			Args: []specs.LinuxSeccompArg{{Index: 0, Value: v, ValueTwo: v2, Op: op}}})
	}
	tests := []struct {
		name      string
		profile   *specs.LinuxSeccomp
		syscall   string
		arg0      uint64
		arg1      uint64
		wantErrno syscall.Errno // 0: the syscall ran
		notErrno  syscall.Errno // for allowed ioprio_get: anything but the rule's errno
		created   bool          // mkdirat really created the directory
	}{
		{name: "errno default EPERM", profile: allowAllBut(deny(specs.ActErrno, nil, "mkdirat")),
			syscall: "mkdirat", wantErrno: unix.EPERM},
		{name: "errno ENOSYS", profile: allowAllBut(deny(specs.ActErrno, uptr(uint(unix.ENOSYS)), "mkdirat")),
			syscall: "mkdirat", wantErrno: unix.ENOSYS},
		{name: "errno 0 fakes success", profile: allowAllBut(deny(specs.ActErrno, uptr(0), "mkdirat")),
			syscall: "mkdirat"},
		{name: "defaultErrnoRet", profile: &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
			DefaultErrnoRet: exdev, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdirat"},
				Action: specs.ActErrno, ErrnoRet: uptr(uint(unix.ENOTDIR))}, {Names: fullGoRuntime,
				Action: specs.ActAllow}}},
			syscall: "ioprio_get", arg0: 1, wantErrno: unix.EXDEV},
		{name: "trace without tracer", profile: allowAllBut(deny(specs.ActTrace, nil, "mkdirat")),
			syscall: "mkdirat", wantErrno: unix.ENOSYS},
		{name: "log rule allows", profile: allowAllBut(deny(specs.ActLog, nil, "mkdirat")),
			syscall: "mkdirat", created: true},
		{name: "log default allows", profile: &specs.LinuxSeccomp{DefaultAction: specs.ActLog,
			Syscalls: []specs.LinuxSyscall{deny(specs.ActErrno, nil, "ioprio_get")}},
			syscall: "mkdirat", created: true},
		{name: "unknown name skipped", profile: allowAllBut(deny(specs.ActErrno, nil, "knast_no_such_syscall", "mkdirat")),
			syscall: "mkdirat", wantErrno: unix.EPERM},
		{name: "flags log spec_allow", profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Flags:    []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog, specs.LinuxSeccompFlagSpecAllow},
			Syscalls: []specs.LinuxSyscall{deny(specs.ActErrno, nil, "mkdirat")}},
			syscall: "mkdirat", wantErrno: unix.EPERM},
		{name: "tsync filters other threads", profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow,
			Flags:    []specs.LinuxSeccompFlag{flagTsync},
			Syscalls: []specs.LinuxSyscall{deny(specs.ActErrno, nil, "mkdirat")}},
			syscall: "mkdirat-other-thread", wantErrno: unix.EPERM},
		{name: "without tsync other threads are free", profile: allowAllBut(deny(specs.ActErrno, nil, "mkdirat")),
			syscall: "mkdirat-other-thread", created: true},
		{name: "personality query denied", profile: allowAllBut(specs.LinuxSyscall{Names: []string{"personality"},
			Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}}),
			syscall: "personality", arg0: 0xffffffff, wantErrno: unix.EPERM},
		{name: "personality other value runs", profile: allowAllBut(specs.LinuxSyscall{Names: []string{"personality"},
			Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}}),
			syscall: "personality", arg0: 0},
		{name: "NE hit", profile: ioprio(specs.OpNotEqual, 5, 0), syscall: "ioprio_get", arg0: 4, wantErrno: unix.EXDEV},
		{name: "NE miss", profile: ioprio(specs.OpNotEqual, 5, 0), syscall: "ioprio_get", arg0: 5, notErrno: unix.EXDEV},
		{name: "LT hit", profile: ioprio(specs.OpLessThan, 5, 0), syscall: "ioprio_get", arg0: 4, wantErrno: unix.EXDEV},
		{name: "LT miss", profile: ioprio(specs.OpLessThan, 5, 0), syscall: "ioprio_get", arg0: 5, notErrno: unix.EXDEV},
		{name: "LE hit", profile: ioprio(specs.OpLessEqual, 5, 0), syscall: "ioprio_get", arg0: 5, wantErrno: unix.EXDEV},
		{name: "LE miss", profile: ioprio(specs.OpLessEqual, 5, 0), syscall: "ioprio_get", arg0: 6, notErrno: unix.EXDEV},
		{name: "EQ hit", profile: ioprio(specs.OpEqualTo, 5, 0), syscall: "ioprio_get", arg0: 5, wantErrno: unix.EXDEV},
		{name: "EQ miss", profile: ioprio(specs.OpEqualTo, 5, 0), syscall: "ioprio_get", arg0: 4, notErrno: unix.EXDEV},
		{name: "GE hit", profile: ioprio(specs.OpGreaterEqual, 5, 0), syscall: "ioprio_get", arg0: 5, wantErrno: unix.EXDEV},
		{name: "GE miss", profile: ioprio(specs.OpGreaterEqual, 5, 0), syscall: "ioprio_get", arg0: 4, notErrno: unix.EXDEV},
		{name: "GT hit", profile: ioprio(specs.OpGreaterThan, 5, 0), syscall: "ioprio_get", arg0: 6, wantErrno: unix.EXDEV},
		{name: "GT miss", profile: ioprio(specs.OpGreaterThan, 5, 0), syscall: "ioprio_get", arg0: 5, notErrno: unix.EXDEV},
		{name: "GT 64-bit hit", profile: ioprio(specs.OpGreaterThan, 0xffffffff, 0), syscall: "ioprio_get",
			arg0: 0x100000000, wantErrno: unix.EXDEV},
		{name: "GT 64-bit miss", profile: ioprio(specs.OpGreaterThan, 0xffffffff, 0), syscall: "ioprio_get",
			arg0: 0xffffffff, notErrno: unix.EXDEV},
		{name: "MASKED_EQ hit", profile: ioprio(specs.OpMaskedEqual, 0xf0, 0x10), syscall: "ioprio_get",
			arg0: 0x13, wantErrno: unix.EXDEV},
		{name: "MASKED_EQ miss", profile: ioprio(specs.OpMaskedEqual, 0xf0, 0x10), syscall: "ioprio_get",
			arg0: 0x23, notErrno: unix.EXDEV},
		{name: "two args both match", profile: allowAllBut(specs.LinuxSyscall{Names: []string{"ioprio_get"},
			Action: specs.ActErrno, ErrnoRet: exdev, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 0, Op: specs.OpEqualTo}}}),
			syscall: "ioprio_get", arg0: 1, arg1: 0, wantErrno: unix.EXDEV},
		{name: "two args one matches", profile: allowAllBut(specs.LinuxSyscall{Names: []string{"ioprio_get"},
			Action: specs.ActErrno, ErrnoRet: exdev, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 1, Value: 0, Op: specs.OpEqualTo}}}),
			syscall: "ioprio_get", arg0: 1, arg1: 1, notErrno: unix.EXDEV},
		{name: "same arg twice matches either (runc)", profile: allowAllBut(specs.LinuxSyscall{
			Names: []string{"ioprio_get"}, Action: specs.ActErrno, ErrnoRet: exdev, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 3, Op: specs.OpEqualTo}, {Index: 0, Value: 7, Op: specs.OpEqualTo}}}),
			syscall: "ioprio_get", arg0: 7, wantErrno: unix.EXDEV},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			o := runChildPlan(t, childPlan{Profile: tc.profile, Syscall: tc.syscall, Arg0: tc.arg0, Arg1: tc.arg1, Dir: dir})
			if !o.status.Exited() || o.status.ExitStatus() != 0 {
				t.Fatalf("child status %v, stderr %q", o.status, o.stderr)
			}
			got := syscall.Errno(o.res.Errno)
			if tc.notErrno != 0 {
				if got == tc.notErrno {
					t.Errorf("errno %v: the rule matched, want it not to", got)
				}
			} else if got != tc.wantErrno {
				t.Errorf("errno %d (%v), want %d (%v)", got, got, tc.wantErrno, tc.wantErrno)
			}
			if strings.HasPrefix(tc.syscall, "mkdirat") {
				_, err := os.Stat(filepath.Join(dir, "x"))
				if created := err == nil; created != tc.created {
					t.Errorf("directory created %v, want %v", created, tc.created)
				}
			}
		})
	}
}

// fullGoRuntime is what a Go child needs after the filter is in place on its thread, for profiles whose
// default refuses everything else.
var fullGoRuntime = []string{"futex", "write", "exit_group", "exit", "rt_sigprocmask", "rt_sigreturn",
	"sigaltstack", "mmap", "munmap", "madvise", "nanosleep", "sched_yield", "getpid", "gettid", "tgkill",
	"clone", "clone3", "rt_sigaction", "mprotect", "epoll_pwait", "epoll_ctl", "read", "close", "fcntl"}

// TestKillActions checks the actions that end the process: the child dies of SIGSYS.
func TestKillActions(t *testing.T) {
	requireBusybox(t)
	tests := []struct {
		name    string
		act     specs.LinuxSeccompAction
		viaExec bool // KILL_THREAD and TRAP need a single-threaded process: busybox, not the Go child
	}{
		{"kill", specs.ActKill, true},
		{"kill thread", specs.ActKillThread, true},
		{"trap", specs.ActTrap, true},
		{"kill process", specs.ActKillProcess, false},
		{"kill process via exec", specs.ActKillProcess, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := childPlan{Profile: allowAllBut(deny(tc.act, nil, "mkdir", "mkdirat")), Dir: dir}
			if tc.viaExec {
				p.Args = []string{busybox, "mkdir", filepath.Join(dir, "x")}
			} else {
				p.Syscall = "mkdirat"
			}
			o := runChildPlan(t, p)
			if !o.status.Signaled() || o.status.Signal() != unix.SIGSYS {
				t.Errorf("child status %v (stderr %q), want killed by SIGSYS", o.status, o.stderr)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Error("the directory was created")
			}
		})
	}
}

func requireBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(busybox); err != nil {
		t.Skipf("busybox-static is not installed: %v", err)
	}
}

func busyboxHas(t *testing.T, applet string) bool {
	t.Helper()
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		t.Fatalf("busybox --list: %v", err)
	}
	return slices.Contains(strings.Fields(string(out)), applet)
}

// TestExecProfiles runs busybox under whole profiles, the default one first.
func TestExecProfiles(t *testing.T) {
	requireBusybox(t)
	def := spec.DefaultSeccomp()
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		args    []string
		applet  string // skip when busybox lacks it
		wantOK  bool
		stdout  []string // lines the output must contain
	}{
		{name: "default profile runs a shell", profile: def,
			args: []string{busybox, "sh", "-c", "echo ok; ls /"}, wantOK: true, stdout: []string{"ok", "proc", "usr"}},
		{name: "default profile refuses a user namespace", profile: def,
			args: []string{busybox, "unshare", "-U", "true"}, applet: "unshare"},
		{name: "LOG default", profile: &specs.LinuxSeccomp{DefaultAction: specs.ActLog},
			args: []string{busybox, "sh", "-c", "echo ok"}, wantOK: true, stdout: []string{"ok"}},
		{name: "ALLOW default with an ERRNO rule", profile: allowAllBut(deny(specs.ActErrno, nil, "mkdir", "mkdirat")),
			args: []string{busybox, "sh", "-c", "echo ok; mkdir /tmp/knast-seccomp-never"}, stdout: []string{"ok"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.applet != "" && !busyboxHas(t, tc.applet) {
				t.Skipf("busybox has no %s applet", tc.applet)
			}
			o := runChildPlan(t, childPlan{Profile: tc.profile, Args: tc.args})
			ok := o.status.Exited() && o.status.ExitStatus() == 0
			if ok != tc.wantOK {
				t.Errorf("status %v (stdout %q stderr %q), want success %v", o.status, o.stdout, o.stderr, tc.wantOK)
			}
			if !o.status.Exited() || o.status.ExitStatus() >= 10 && o.status.ExitStatus() <= 16 {
				t.Errorf("the child itself failed: status %v stderr %q", o.status, o.stderr)
			}
			for _, s := range tc.stdout {
				if !slices.Contains(strings.Fields(o.stdout), s) {
					t.Errorf("stdout %q lacks %q", o.stdout, s)
				}
			}
		})
	}
	if _, err := os.Stat("/tmp/knast-seccomp-never"); err == nil {
		os.Remove("/tmp/knast-seccomp-never")
		t.Error("mkdir ran despite the ERRNO rule")
	}
}

// TestDefaultProfileSyscalls checks the default profile's argument rules from a Go child.
func TestDefaultProfileSyscalls(t *testing.T) {
	def := spec.DefaultSeccomp()
	tests := []struct {
		syscall   string
		arg0      uint64
		wantErrno syscall.Errno
	}{
		{"clone", unix.CLONE_NEWUSER, unix.EPERM},
		{"clone", unix.CLONE_NEWNS, unix.EPERM},
		{"unshare", unix.CLONE_NEWUSER, unix.EPERM},
		{"clone3", 0, unix.ENOSYS},
		{"mount", 0, unix.EPERM},
		{"personality", 0xffffffff, 0},
		{"personality", 0x0400000, unix.EPERM}, // READ_IMPLIES_EXEC
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s %#x", tc.syscall, tc.arg0), func(t *testing.T) {
			o := runChildPlan(t, childPlan{Profile: def, Syscall: tc.syscall, Arg0: tc.arg0, Dir: t.TempDir()})
			if !o.status.Exited() || o.status.ExitStatus() != 0 {
				t.Fatalf("child status %v, stderr %q", o.status, o.stderr)
			}
			if got := syscall.Errno(o.res.Errno); got != tc.wantErrno {
				t.Errorf("errno %d (%v), want %d (%v)", got, got, tc.wantErrno, tc.wantErrno)
			}
		})
	}
}

// TestNotify hands the listener fd to a test agent that answers the child's mkdirat with a value.
func TestNotify(t *testing.T) {
	if api, _ := libseccomp.GetAPI(); api < 6 {
		t.Skipf("libseccomp API level %d: no user notification (needs 6: libseccomp 2.5, Linux 5.7)", api)
	}
	_, _, kernelFlags, _ := Supported()
	tests := []struct {
		name  string
		flags []specs.LinuxSeccompFlag
	}{
		{"plain", nil},
		{"tsync", []specs.LinuxSeccompFlag{flagTsync}},
		{"wait killable", []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagWaitKillableRecv}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, f := range tc.flags {
				if !slices.Contains(kernelFlags, string(f)) {
					t.Skipf("kernel lacks %s", f)
				}
			}
			dir := t.TempDir()
			sock := filepath.Join(dir, "agent.sock")
			l, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			type agentResult struct {
				state   specs.ContainerProcessState
				syscall string
				pid     uint32
				err     error
			}
			done := make(chan agentResult, 1)
			go func() {
				var r agentResult
				r.state, r.syscall, r.pid, r.err = agent(l, 42)
				done <- r
			}()
			profile := allowAllBut(deny(specs.ActNotify, nil, "mkdirat"))
			profile.ListenerPath = sock
			profile.ListenerMetadata = "MKDIR=42"
			profile.Flags = tc.flags
			o := runChildPlan(t, childPlan{Profile: profile, Metadata: profile.ListenerMetadata, Syscall: "mkdirat", Dir: dir})
			if !o.status.Exited() || o.status.ExitStatus() != 0 {
				t.Fatalf("child status %v, stderr %q", o.status, o.stderr)
			}
			var r agentResult
			select {
			case r = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("the agent did not finish")
			}
			if r.err != nil {
				t.Fatal(r.err)
			}
			if o.res.Ret != 42 || o.res.Errno != 0 {
				t.Errorf("mkdirat returned %d errno %d, want the agent's 42", o.res.Ret, o.res.Errno)
			}
			if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
				t.Error("mkdirat ran although the agent answered for it")
			}
			st := r.state
			if !slices.Equal(st.Fds, []string{specs.SeccompFdName}) || st.Metadata != "MKDIR=42" ||
				st.Version != specs.Version || st.Pid <= 0 || st.State.ID != "seccomp-test" || st.State.Pid != st.Pid {
				t.Errorf("container process state %+v", st)
			}
			if r.syscall != "mkdirat" || int(r.pid) != st.Pid {
				t.Errorf("notification for %s from pid %d, want mkdirat from %d", r.syscall, r.pid, st.Pid)
			}
		})
	}
}

// agent accepts one connection, reads the seccomp fd and the state, and answers one notification with val.
func agent(l *net.UnixListener, val int64) (st specs.ContainerProcessState, name string, pid uint32, err error) {
	_ = l.SetDeadline(time.Now().Add(30 * time.Second))
	conn, err := l.AcceptUnix()
	if err != nil {
		return st, "", 0, fmt.Errorf("agent: accept: %w", err)
	}
	defer conn.Close()
	buf, oob := make([]byte, 1<<16), make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return st, "", 0, fmt.Errorf("agent: read: %w", err)
	}
	rest, err := io.ReadAll(conn)
	if err != nil {
		return st, "", 0, fmt.Errorf("agent: read: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return st, "", 0, fmt.Errorf("agent: control messages %d: %v", len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return st, "", 0, fmt.Errorf("agent: fds %v: %v", fds, err)
	}
	defer unix.Close(fds[0])
	if err := json.Unmarshal(append(buf[:n], rest...), &st); err != nil {
		return st, "", 0, fmt.Errorf("agent: state: %w", err)
	}
	req, err := libseccomp.NotifReceive(libseccomp.ScmpFd(fds[0]))
	if err != nil {
		return st, "", 0, fmt.Errorf("agent: receive notification: %w", err)
	}
	name, _ = req.Data.Syscall.GetName()
	if err := libseccomp.NotifRespond(libseccomp.ScmpFd(fds[0]),
		&libseccomp.ScmpNotifResp{ID: req.ID, Val: uint64(val)}); err != nil {
		return st, name, req.Pid, fmt.Errorf("agent: respond: %w", err)
	}
	return st, name, req.Pid, nil
}

func TestPrepareErrors(t *testing.T) {
	ok := specs.LinuxSyscall{Names: []string{"mkdirat"}, Action: specs.ActErrno}
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		want    []string
	}{
		{"nil", nil, []string{"linux.seccomp: no profile"}},
		{"default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_NOPE"},
			[]string{`linux.seccomp.defaultAction: unknown action "SCMP_ACT_NOPE"`}},
		{"rule action", allowAllBut(ok, specs.LinuxSyscall{Names: []string{"read"}, Action: "SCMP_ACT_PERMIT"}),
			[]string{`linux.seccomp.syscalls[1].action: unknown action "SCMP_ACT_PERMIT"`}},
		{"errnoRet with allow", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno,
			Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow, ErrnoRet: uptr(5)}}},
			[]string{"linux.seccomp.syscalls[0].errnoRet: not allowed with SCMP_ACT_ALLOW"}},
		{"defaultErrnoRet with kill", &specs.LinuxSeccomp{DefaultAction: specs.ActKill, DefaultErrnoRet: uptr(1)},
			[]string{"linux.seccomp.defaultErrnoRet: not allowed with SCMP_ACT_KILL"}},
		{"errnoRet too big", allowAllBut(deny(specs.ActErrno, uptr(70000), "read")),
			[]string{"linux.seccomp.syscalls[0].errnoRet: 70000 does not fit"}},
		{"architecture", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"SCMP_ARCH_Z80"}},
			[]string{`linux.seccomp.architectures[0]: unknown architecture "SCMP_ARCH_Z80"`}},
		{"flag", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_NOPE"}},
			[]string{`linux.seccomp.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_NOPE"`}},
		{"operator and index", allowAllBut(specs.LinuxSyscall{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Op: "EQ"}, {Index: 6, Op: specs.OpEqualTo}}}),
			[]string{`linux.seccomp.syscalls[0].args[0].op: unknown operator "EQ"`,
				"linux.seccomp.syscalls[0].args[1].index: 6 is above 5"}},
		{"names", allowAllBut(specs.LinuxSyscall{Action: specs.ActErrno},
			specs.LinuxSyscall{Names: []string{"read", ""}, Action: specs.ActErrno}),
			[]string{"linux.seccomp.syscalls[0].names: must not be empty",
				"linux.seccomp.syscalls[1].names[1]: empty syscall name"}},
		{"notify default", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify, ListenerPath: "/x"},
			[]string{"linux.seccomp.defaultAction: SCMP_ACT_NOTIFY cannot be the default action"}},
		{"notify write", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/x",
			Syscalls: []specs.LinuxSyscall{deny(specs.ActNotify, nil, "read", "write")}},
			[]string{"linux.seccomp.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for write"}},
		{"notify without listener", allowAllBut(deny(specs.ActNotify, nil, "mkdirat")),
			[]string{"linux.seccomp.listenerPath: must be set when SCMP_ACT_NOTIFY is used"}},
		{"metadata without listener", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerMetadata: "x"},
			[]string{"linux.seccomp.listenerMetadata: set without listenerPath"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Prepare(tc.profile)
			if err == nil {
				t.Fatalf("Prepare accepted the profile (%d instructions)", f.Len())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if n := strings.Count(err.Error(), "\n") + 1; n != len(tc.want) {
				t.Errorf("%d errors reported, want %d: %q", n, len(tc.want), err)
			}
		})
	}
}

func TestPrepareProfiles(t *testing.T) {
	tests := []struct {
		name    string
		profile *specs.LinuxSeccomp
		notify  bool
		skipped []string
	}{
		{"default", spec.DefaultSeccomp(), false, nil},
		{"default with every capability", spec.DefaultSeccompFor(runtime.GOARCH, []string{"CAP_SYS_ADMIN",
			"CAP_SYS_PTRACE", "CAP_SYS_BOOT", "CAP_SYS_MODULE", "CAP_SYSLOG", "CAP_BPF", "CAP_PERFMON"}), false, nil},
		{"unknown names", allowAllBut(deny(specs.ActErrno, nil, "knast_no_such_syscall", "mkdirat", "knast_nope2")),
			false, []string{"knast_no_such_syscall", "knast_nope2"}},
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, ListenerPath: "/run/agent.sock",
			Syscalls: []specs.LinuxSyscall{deny(specs.ActNotify, nil, "mkdirat")}}, true, nil},
		{"rule equal to the default is dropped", allowAllBut(deny(specs.ActAllow, nil, "read")), false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f, err := Prepare(tc.profile)
			if err != nil {
				t.Fatal(err)
			}
			if f.Len() == 0 || f.Notify() != tc.notify {
				t.Errorf("%d instructions, notify %v; want a program, notify %v", f.Len(), f.Notify(), tc.notify)
			}
			// The default profile lists syscalls of other architectures and newer kernels: those may be
			// skipped, the ones every container needs must not.
			for _, s := range f.Skipped() {
				if slices.Contains([]string{"read", "write", "execve", "clone", "clone3", "mkdirat"}, s) {
					t.Errorf("%s was skipped", s)
				}
			}
			if tc.skipped != nil && !slices.Equal(f.Skipped(), tc.skipped) {
				t.Errorf("skipped %v, want %v", f.Skipped(), tc.skipped)
			}
		})
	}
}

func TestSupported(t *testing.T) {
	actions, archs, flags, ops := Supported()
	for _, want := range []specs.LinuxSeccompAction{specs.ActAllow, specs.ActErrno, specs.ActKill, specs.ActTrap, specs.ActTrace} {
		if !slices.Contains(actions, string(want)) {
			t.Errorf("actions %v lack %s", actions, want)
		}
	}
	if len(ops) != 7 {
		t.Errorf("operators %v, want all seven", ops)
	}
	native := map[string]specs.Arch{"amd64": specs.ArchX86_64, "arm64": specs.ArchAARCH64, "s390x": specs.ArchS390X,
		"ppc64le": specs.ArchPPC64LE, "riscv64": specs.ArchRISCV64, "386": specs.ArchX86}[runtime.GOARCH]
	if native != "" && !slices.Contains(archs, string(native)) {
		t.Errorf("architectures %v lack the native %s", archs, native)
	}
	if Version() == "" || Version() == "0.0.0" {
		t.Errorf("libseccomp version %q", Version())
	}
	// Everything reported must compile; every reported flag must load.
	for _, a := range archs {
		if _, err := Prepare(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.Arch(a)},
			Syscalls: []specs.LinuxSyscall{deny(specs.ActErrno, nil, "mkdirat")}}); err != nil {
			t.Errorf("reported architecture %s: %v", a, err)
		}
	}
	for _, a := range actions {
		p := allowAllBut(deny(specs.LinuxSeccompAction(a), nil, "mkdirat"))
		if a == string(specs.ActAllow) {
			p.DefaultAction = specs.ActErrno
		}
		if a == string(specs.ActNotify) {
			p.ListenerPath = "/run/agent.sock"
		}
		if _, err := Prepare(p); err != nil {
			t.Errorf("reported action %s: %v", a, err)
		}
	}
	var all []specs.LinuxSeccompFlag
	for _, f := range flags {
		all = append(all, specs.LinuxSeccompFlag(f))
	}
	o := runChildPlan(t, childPlan{Profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: all,
		Syscalls: []specs.LinuxSyscall{deny(specs.ActErrno, nil, "mkdirat")}}, Syscall: "mkdirat", Dir: t.TempDir()})
	if !o.status.Exited() || o.status.ExitStatus() != 0 || syscall.Errno(o.res.Errno) != unix.EPERM {
		t.Errorf("flags %v: status %v errno %d stderr %q", flags, o.status, o.res.Errno, o.stderr)
	}
	// An architecture this libseccomp cannot build for is a clear error, not a silent gap.
	for _, a := range specArches {
		if slices.Contains(archs, string(a.name)) {
			continue
		}
		_, err := Prepare(&specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{a.name}})
		if err == nil || !strings.Contains(err.Error(), "linux.seccomp.architectures[0]: "+string(a.name)+" cannot be used on this host") {
			t.Errorf("unsupported %s: error %v", a.name, err)
		}
	}
}

func TestSendNotifyFdErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		fd   int
		want string
	}{
		{"bad fd", filepath.Join(dir, "s"), -1, "bad fd -1"},
		{"no listener", filepath.Join(dir, "missing.sock"), 0, "connect to listener"},
	}
	for _, tc := range tests {
		err := SendNotifyFd(tc.path, tc.fd, specs.ContainerProcessState{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}
