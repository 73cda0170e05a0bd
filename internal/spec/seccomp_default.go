package spec

import (
	"runtime"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// defaultCapabilities is the bounding set `knast spec` gives the process (runc's example).
var defaultCapabilities = []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}

// Linux clone(2) namespace flags, spelled out because this package also builds for other systems.
const (
	cloneNewCgroup = 0x02000000
	cloneNewNS     = 0x00020000
	cloneNewUTS    = 0x04000000
	cloneNewIPC    = 0x08000000
	cloneNewUser   = 0x10000000
	cloneNewPID    = 0x20000000
	cloneNewNet    = 0x40000000

	cloneNamespaces = cloneNewNS | cloneNewUTS | cloneNewIPC | cloneNewUser | cloneNewPID | cloneNewNet | cloneNewCgroup
)

// DefaultSeccomp is the seccomp profile `knast spec` writes: containerd's default profile for this
// machine's architecture, resolved for the capabilities `knast spec` grants.
func DefaultSeccomp() *specs.LinuxSeccomp {
	return DefaultSeccompFor(runtime.GOARCH, defaultCapabilities)
}

// DefaultSeccompFor is containerd's default profile (contrib/seccomp) for the Go architecture goarch and a
// process whose bounding set is capabilities: an allowlist with every other syscall failing with EPERM,
// the groups of syscalls a capability makes useful added when that capability is held, and without
// CAP_SYS_ADMIN clone limited to flags that create no namespace and clone3 failing with ENOSYS, so that
// libcs fall back to clone, whose flags the filter can see.
func DefaultSeccompFor(goarch string, capabilities []string) *specs.LinuxSeccomp {
	eperm := uint(1)
	s := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: &eperm,
		Architectures:   seccompArches(goarch),
		Syscalls: []specs.LinuxSyscall{
			allow(defaultAllowed...),
			// Only the personalities that do not weaken the container: PER_LINUX, PER_LINUX32, their
			// UNAME26 variants, and the query.
			allowIfArg0("personality", 0x0),
			allowIfArg0("personality", 0x0008),
			allowIfArg0("personality", 0x20000),
			allowIfArg0("personality", 0x20008),
			allowIfArg0("personality", 0xffffffff),
			// containerd adds ptrace on kernels from 4.8 on, where seccomp can no longer be bypassed with it;
			// knast needs a newer kernel anyway.
			allow("ptrace"),
		},
	}
	if names := archAllowed[goarch]; names != nil {
		s.Syscalls = append(s.Syscalls, allow(names...))
	}

	admin := false
	for _, c := range capabilities {
		if c == "CAP_SYS_ADMIN" {
			admin = true
		}
		if names := capAllowed[c]; names != nil {
			s.Syscalls = append(s.Syscalls, allow(names...))
		}
	}
	if !admin {
		// s390 swaps clone's first two arguments.
		flagsArg := uint(0)
		if goarch == "s390x" {
			flagsArg = 1
		}
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:  []string{"clone"},
			Action: specs.ActAllow,
			Args:   []specs.LinuxSeccompArg{{Index: flagsArg, Value: cloneNamespaces, ValueTwo: 0, Op: specs.OpMaskedEqual}},
		})
		enosys := uint(enosysFor(goarch))
		s.Syscalls = append(s.Syscalls, specs.LinuxSyscall{
			Names:    []string{"clone3"},
			Action:   specs.ActErrno,
			ErrnoRet: &enosys,
		})
	}
	return s
}

// enosysFor is ENOSYS on goarch: MIPS numbers its errnos differently.
func enosysFor(goarch string) int {
	switch goarch {
	case "mips", "mipsle", "mips64", "mips64le":
		return 89
	}
	return 38
}

// seccompArches are the architectures whose syscalls the filter accepts: the native one and the compat
// ABIs the kernel also runs on it.
func seccompArches(goarch string) []specs.Arch {
	switch goarch {
	case "amd64":
		return []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}
	case "arm64":
		return []specs.Arch{specs.ArchARM, specs.ArchAARCH64}
	case "mips64":
		return []specs.Arch{specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32}
	case "mips64le":
		return []specs.Arch{specs.ArchMIPSEL, specs.ArchMIPSEL64, specs.ArchMIPSEL64N32}
	case "s390x":
		return []specs.Arch{specs.ArchS390, specs.ArchS390X}
	case "riscv64":
		return []specs.Arch{specs.ArchRISCV64}
	}
	return []specs.Arch{}
}

func allow(names ...string) specs.LinuxSyscall {
	return specs.LinuxSyscall{Names: slices.Clone(names), Action: specs.ActAllow}
}

func allowIfArg0(name string, v uint64) specs.LinuxSyscall {
	return specs.LinuxSyscall{
		Names:  []string{name},
		Action: specs.ActAllow,
		Args:   []specs.LinuxSeccompArg{{Index: 0, Value: v, Op: specs.OpEqualTo}},
	}
}

// archAllowed are the architecture-specific syscalls of the default profile, by Go architecture.
var archAllowed = map[string][]string{
	"ppc64le": {"sync_file_range2", "swapcontext"},
	"arm":     {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
	"arm64":   {"arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"},
	"amd64":   {"arch_prctl", "modify_ldt"},
	"386":     {"modify_ldt"},
	"s390x":   {"s390_pci_mmio_read", "s390_pci_mmio_write", "s390_runtime_instr"},
	"riscv64": {"riscv_flush_icache"},
}

// capAllowed are the syscalls the default profile adds for a capability in the bounding set.
var capAllowed = map[string][]string{
	"CAP_DAC_READ_SEARCH": {"open_by_handle_at"},
	"CAP_SYS_ADMIN": {
		"bpf", "clone", "clone3", "fanotify_init", "fsconfig", "fsmount", "fsopen", "fspick", "lookup_dcookie",
		"mount", "mount_setattr", "move_mount", "name_to_handle_at", "open_tree", "perf_event_open", "quotactl",
		"quotactl_fd", "setdomainname", "sethostname", "setns", "syslog", "umount", "umount2", "unshare",
	},
	"CAP_SYS_BOOT":   {"reboot"},
	"CAP_SYS_CHROOT": {"chroot"},
	"CAP_SYS_MODULE": {"delete_module", "init_module", "finit_module"},
	"CAP_SYS_PACCT":  {"acct"},
	"CAP_SYS_PTRACE": {
		"kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace",
	},
	"CAP_SYS_RAWIO":      {"iopl", "ioperm"},
	"CAP_SYS_TIME":       {"settimeofday", "stime", "clock_settime", "clock_settime64"},
	"CAP_SYS_TTY_CONFIG": {"vhangup"},
	"CAP_SYSLOG":         {"syslog"},
	"CAP_BPF":            {"bpf"},
	"CAP_PERFMON":        {"perf_event_open"},
}

// defaultAllowed is the unconditional allowlist of containerd's default profile.
var defaultAllowed = []string{
	"accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "capget", "capset", "chdir", "chmod",
	"chown", "chown32", "clock_adjtime", "clock_adjtime64", "clock_getres", "clock_getres_time64",
	"clock_gettime", "clock_gettime64", "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range",
	"connect", "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl",
	"epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2",
	"execve", "execveat", "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fadvise64_64",
	"fallocate", "fanotify_mark", "fchdir", "fchmod", "fchmodat", "fchown", "fchown32", "fchownat", "fcntl",
	"fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat",
	"fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate", "ftruncate64", "futex",
	"futex_time64", "futex_waitv", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
	"getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32", "getitimer",
	"getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority", "getrandom", "getresgid",
	"getresgid32", "getresuid", "getresuid32", "getrlimit", "get_robust_list", "getrusage", "getsid",
	"getsockname", "getsockopt", "get_thread_area", "gettid", "gettimeofday", "getuid", "getuid32", "getxattr",
	"inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl",
	"io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "ioprio_get", "ioprio_set",
	"io_setup", "io_submit", "io_uring_enter", "io_uring_register", "io_uring_setup", "ipc", "kill",
	"landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32",
	"lgetxattr", "link", "linkat", "listen", "listxattr", "llistxattr", "_llseek", "lremovexattr", "lseek",
	"lsetxattr", "lstat", "lstat64", "madvise", "membarrier", "memfd_create", "memfd_secret", "mincore",
	"mkdir", "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
	"mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64", "mq_timedsend",
	"mq_timedsend_time64", "mq_unlink", "mremap", "msgctl", "msgget", "msgrcv", "msgsnd", "msync", "munlock",
	"munlockall", "munmap", "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
	"pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "poll", "ppoll", "ppoll_time64", "prctl", "pread64",
	"preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
	"pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom", "recvmmsg",
	"recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr", "rename", "renameat", "renameat2",
	"restart_syscall", "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
	"rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64", "rt_tgsigqueueinfo",
	"sched_getaffinity", "sched_getattr", "sched_getparam", "sched_get_priority_max", "sched_get_priority_min",
	"sched_getscheduler", "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
	"sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl",
	"semget", "semop", "semtimedop", "semtimedop_time64", "send", "sendfile", "sendfile64", "sendmmsg",
	"sendmsg", "sendto", "setfsgid", "setfsgid32", "setfsuid", "setfsuid32", "setgid", "setgid32",
	"setgroups", "setgroups32", "setitimer", "setpgid", "setpriority", "setregid", "setregid32", "setresgid",
	"setresgid32", "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list",
	"setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32", "setxattr", "shmat",
	"shmctl", "shmdt", "shmget", "shutdown", "sigaltstack", "signalfd", "signalfd4", "sigprocmask",
	"sigreturn", "socket", "socketcall", "socketpair", "splice", "stat", "stat64", "statfs", "statfs64",
	"statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time",
	"timer_create", "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
	"timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64", "timerfd_settime",
	"timerfd_settime64", "times", "tkill", "truncate", "truncate64", "ugetrlimit", "umask", "uname", "unlink",
	"unlinkat", "utime", "utimensat", "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid",
	"waitpid", "write", "writev",
}
