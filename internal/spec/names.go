package spec

import (
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// knownRlimit reports whether name is a resource limit of the target OS (setrlimit(2) / FreeBSD getrlimit(2)).
func knownRlimit(name string, linux bool) bool {
	switch name {
	case "RLIMIT_AS", "RLIMIT_CORE", "RLIMIT_CPU", "RLIMIT_DATA", "RLIMIT_FSIZE", "RLIMIT_MEMLOCK",
		"RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_RSS", "RLIMIT_STACK":
		return true
	case "RLIMIT_LOCKS", "RLIMIT_MSGQUEUE", "RLIMIT_NICE", "RLIMIT_RTPRIO", "RLIMIT_RTTIME", "RLIMIT_SIGPENDING":
		return linux
	case "RLIMIT_SBSIZE", "RLIMIT_VMEM", "RLIMIT_NPTS", "RLIMIT_SWAP", "RLIMIT_KQUEUES", "RLIMIT_UMTXP",
		"RLIMIT_PIPEBUF":
		return !linux
	}
	return false
}

// capabilityNames is the set of "CAP_*" names moby/sys/capability knows, independent of the running kernel:
// whether the kernel supports one is decided when the capability is applied.
func capabilityNames() map[string]bool {
	known := map[string]bool{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = true
	}
	return known
}

func knownSchedFlag(f specs.LinuxSchedulerFlag) bool {
	switch f {
	case specs.SchedFlagResetOnFork, specs.SchedFlagReclaim, specs.SchedFlagDLOverrun, specs.SchedFlagKeepPolicy,
		specs.SchedFlagKeepParams, specs.SchedFlagUtilClampMin, specs.SchedFlagUtilClampMax:
		return true
	}
	return false
}

func knownNamespace(t specs.LinuxNamespaceType) bool {
	switch t {
	case specs.PIDNamespace, specs.NetworkNamespace, specs.MountNamespace, specs.IPCNamespace, specs.UTSNamespace,
		specs.UserNamespace, specs.CgroupNamespace, specs.TimeNamespace:
		return true
	}
	return false
}

func knownPropagation(p string) bool {
	switch p {
	case "shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable":
		return true
	}
	return false
}

// ipcSysctl reports whether name is one of the sysctls the kernel keeps per IPC namespace (ipc/ipc_sysctl.c,
// ipc/mq_sysctl.c).
func ipcSysctl(name string) bool {
	switch name {
	case "kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.msg_next_id",
		"kernel.sem", "kernel.sem_next_id",
		"kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced", "kernel.shm_next_id":
		return true
	}
	return strings.HasPrefix(name, "fs.mqueue.")
}

func knownSeccompAction(a specs.LinuxSeccompAction) bool {
	switch a {
	case specs.ActKill, specs.ActKillProcess, specs.ActKillThread, specs.ActTrap, specs.ActErrno, specs.ActTrace,
		specs.ActAllow, specs.ActLog, specs.ActNotify:
		return true
	}
	return false
}

func knownSeccompOp(o specs.LinuxSeccompOperator) bool {
	switch o {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo, specs.OpGreaterEqual,
		specs.OpGreaterThan, specs.OpMaskedEqual:
		return true
	}
	return false
}

func knownArch(a specs.Arch) bool {
	switch a {
	case specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64, specs.ArchMIPS,
		specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64, specs.ArchMIPSEL64N32,
		specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE, specs.ArchS390, specs.ArchS390X, specs.ArchPARISC,
		specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64, specs.ArchM68K, specs.ArchSH, specs.ArchSHEB:
		return true
	}
	return false
}

func knownMemoryPolicyMode(m specs.MemoryPolicyModeType) bool {
	switch m {
	case specs.MpolDefault, specs.MpolBind, specs.MpolInterleave, specs.MpolWeightedInterleave,
		specs.MpolPreferred, specs.MpolPreferredMany, specs.MpolLocal:
		return true
	}
	return false
}

func knownMemoryPolicyFlag(f specs.MemoryPolicyFlagType) bool {
	switch f {
	case specs.MpolFNumaBalancing, specs.MpolFRelativeNodes, specs.MpolFStaticNodes:
		return true
	}
	return false
}
