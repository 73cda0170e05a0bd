//go:build linux && cgo

package seccomp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/sys/unix"
)

const (
	field = "linux.seccomp"
	// flagTsync is listed by the runtime-spec but has no specs-go constant.
	flagTsync specs.LinuxSeccompFlag = "SECCOMP_FILTER_FLAG_TSYNC"
	// maxInsns is the kernel's BPF_MAXINSNS: longer programs are refused.
	maxInsns = 4096
	// optimizeAbove is where runc switches libseccomp to its binary-tree layout; libseccomp <= 2.5.4
	// misbehaves with the tree and no rules, and short lists gain nothing.
	optimizeAbove = 32
)

// specArches maps the runtime-spec names to libseccomp's; whether this libseccomp build really knows one
// is found out by adding it to a filter.
var specArches = []struct {
	name specs.Arch
	arch libseccomp.ScmpArch
}{
	{specs.ArchX86, libseccomp.ArchX86}, {specs.ArchX86_64, libseccomp.ArchAMD64},
	{specs.ArchX32, libseccomp.ArchX32}, {specs.ArchARM, libseccomp.ArchARM},
	{specs.ArchAARCH64, libseccomp.ArchARM64}, {specs.ArchMIPS, libseccomp.ArchMIPS},
	{specs.ArchMIPS64, libseccomp.ArchMIPS64}, {specs.ArchMIPS64N32, libseccomp.ArchMIPS64N32},
	{specs.ArchMIPSEL, libseccomp.ArchMIPSEL}, {specs.ArchMIPSEL64, libseccomp.ArchMIPSEL64},
	{specs.ArchMIPSEL64N32, libseccomp.ArchMIPSEL64N32}, {specs.ArchPPC, libseccomp.ArchPPC},
	{specs.ArchPPC64, libseccomp.ArchPPC64}, {specs.ArchPPC64LE, libseccomp.ArchPPC64LE},
	{specs.ArchS390, libseccomp.ArchS390}, {specs.ArchS390X, libseccomp.ArchS390X},
	{specs.ArchPARISC, libseccomp.ArchPARISC}, {specs.ArchPARISC64, libseccomp.ArchPARISC64},
	{specs.ArchRISCV64, libseccomp.ArchRISCV64}, {specs.ArchLOONGARCH64, libseccomp.ArchLOONGARCH64},
	{specs.ArchM68K, libseccomp.ArchM68K}, {specs.ArchSH, libseccomp.ArchSH},
	{specs.ArchSHEB, libseccomp.ArchSHEB},
}

var specOps = []struct {
	name specs.LinuxSeccompOperator
	op   libseccomp.ScmpCompareOp
}{
	{specs.OpNotEqual, libseccomp.CompareNotEqual}, {specs.OpLessThan, libseccomp.CompareLess},
	{specs.OpLessEqual, libseccomp.CompareLessOrEqual}, {specs.OpEqualTo, libseccomp.CompareEqual},
	{specs.OpGreaterEqual, libseccomp.CompareGreaterEqual}, {specs.OpGreaterThan, libseccomp.CompareGreater},
	{specs.OpMaskedEqual, libseccomp.CompareMaskedEqual},
}

// specActions lists every runtime-spec action with the kernel's SECCOMP_RET_* value and the libseccomp
// API level that can emit it.
var specActions = []struct {
	name specs.LinuxSeccompAction
	ret  uint32
	api  uint
}{
	{specs.ActKill, unix.SECCOMP_RET_KILL_THREAD, 0},
	{specs.ActKillProcess, unix.SECCOMP_RET_KILL_PROCESS, 3},
	{specs.ActKillThread, unix.SECCOMP_RET_KILL_THREAD, 0},
	{specs.ActTrap, unix.SECCOMP_RET_TRAP, 0},
	{specs.ActErrno, unix.SECCOMP_RET_ERRNO, 0},
	{specs.ActTrace, unix.SECCOMP_RET_TRACE, 0},
	{specs.ActAllow, unix.SECCOMP_RET_ALLOW, 0},
	{specs.ActLog, unix.SECCOMP_RET_LOG, 3},
	{specs.ActNotify, unix.SECCOMP_RET_USER_NOTIF, 6},
}

type rule struct {
	field string // "linux.seccomp.syscalls[i]"
	names []string
	act   libseccomp.ScmpAction
	conds []libseccomp.ScmpCondition
	// sameArg: two conditions test one argument, which libseccomp cannot AND in one rule; like runc, each
	// condition then becomes a rule of its own.
	sameArg bool
}

// Prepare compiles the profile. Errors name the offending field ("linux.seccomp.syscalls[3].action:
// unknown action ..."); every problem found is reported, joined. Syscall names unknown to this host's
// libseccomp are skipped (see Filter.Skipped).
func Prepare(s *specs.LinuxSeccomp) (*Filter, error) {
	if s == nil {
		return nil, errors.New(field + ": no profile")
	}
	api, _ := libseccomp.GetAPI() // an error means a pre-2.4 libseccomp: API level 0
	var errs []error
	bad := func(f, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", f, fmt.Sprintf(format, a...)))
	}

	notify := false
	for _, sc := range s.Syscalls {
		notify = notify || sc.Action == specs.ActNotify
	}

	defData, err := errnoData(s.DefaultAction, s.DefaultErrnoRet)
	if err != nil {
		bad(field+".defaultErrnoRet", "%v", err)
	}
	defAct, err := action(s.DefaultAction, defData, api)
	if err != nil {
		bad(field+".defaultAction", "%v", err)
	} else if s.DefaultAction == specs.ActNotify {
		// Every syscall would wait for an agent that only gets its fd after the runtime has sent it.
		bad(field+".defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
	}

	var archs []libseccomp.ScmpArch
	for i, a := range s.Architectures {
		arch, ok := archOf(a)
		if !ok {
			bad(fmt.Sprintf("%s.architectures[%d]", field, i), "unknown architecture %q", a)
			continue
		}
		archs = append(archs, arch)
	}

	type wanted struct {
		i   int
		bit uint
	}
	var flags uint
	var want []wanted
	for i, fl := range s.Flags {
		var bit uint
		switch fl {
		case flagTsync:
			bit = unix.SECCOMP_FILTER_FLAG_TSYNC
		case specs.LinuxSeccompFlagLog:
			bit = unix.SECCOMP_FILTER_FLAG_LOG
		case specs.LinuxSeccompFlagSpecAllow:
			bit = unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW
		case specs.LinuxSeccompFlagWaitKillableRecv:
			if !notify {
				continue // meaningful only for a listener, and the kernel refuses it without one
			}
			bit = unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
		default:
			bad(fmt.Sprintf("%s.flags[%d]", field, i), "unknown flag %q", fl)
			continue
		}
		flags |= bit
		want = append(want, wanted{i, bit})
	}
	if notify {
		flags |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
		if flags&unix.SECCOMP_FILTER_FLAG_TSYNC != 0 {
			// TSYNC reports a failing thread id where the listener fd belongs; TSYNC_ESRCH makes it an error.
			flags |= unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH
		}
		if !kernelFlag(flags & (unix.SECCOMP_FILTER_FLAG_NEW_LISTENER | unix.SECCOMP_FILTER_FLAG_TSYNC |
			unix.SECCOMP_FILTER_FLAG_TSYNC_ESRCH)) {
			bad(field+".syscalls", "SCMP_ACT_NOTIFY is not supported by this kernel")
		}
	}
	for _, w := range want {
		probe := w.bit
		if w.bit == unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV {
			probe |= unix.SECCOMP_FILTER_FLAG_NEW_LISTENER
		}
		if !kernelFlag(probe) {
			bad(fmt.Sprintf("%s.flags[%d]", field, w.i), "%s is not supported by this kernel", s.Flags[w.i])
		}
	}

	if s.ListenerMetadata != "" && s.ListenerPath == "" {
		bad(field+".listenerMetadata", "set without listenerPath")
	}
	if notify && s.ListenerPath == "" {
		bad(field+".listenerPath", "must be set when SCMP_ACT_NOTIFY is used")
	}

	var rules []rule
	for i, sc := range s.Syscalls {
		f := fmt.Sprintf("%s.syscalls[%d]", field, i)
		if len(sc.Names) == 0 {
			bad(f+".names", "must not be empty")
		}
		for j, n := range sc.Names {
			switch {
			case n == "":
				bad(fmt.Sprintf("%s.names[%d]", f, j), "empty syscall name")
			case n == "write" && sc.Action == specs.ActNotify:
				// The runtime itself still writes to hand the notify fd over: it would wait for itself.
				bad(fmt.Sprintf("%s.names[%d]", f, j), "SCMP_ACT_NOTIFY cannot be used for write")
			}
		}
		data, err := errnoData(sc.Action, sc.ErrnoRet)
		if err != nil {
			bad(f+".errnoRet", "%v", err)
		}
		act, err := action(sc.Action, data, api)
		if err != nil {
			bad(f+".action", "%v", err)
		}
		r := rule{field: f, names: sc.Names, act: act}
		var seen [6]bool
		for k, a := range sc.Args {
			af := fmt.Sprintf("%s.args[%d]", f, k)
			op, ok := opOf(a.Op)
			if !ok {
				bad(af+".op", "unknown operator %q", a.Op)
				continue
			}
			if a.Index > 5 {
				bad(af+".index", "%d is above 5 (syscalls have six arguments)", a.Index)
				continue
			}
			values := []uint64{a.Value}
			if a.Op == specs.OpMaskedEqual {
				values = append(values, a.ValueTwo) // mask first, then the value the masked argument must equal
			}
			cond, err := libseccomp.MakeCondition(a.Index, op, values...)
			if err != nil {
				bad(af, "%v", err)
				continue
			}
			r.sameArg = r.sameArg || seen[a.Index]
			seen[a.Index] = true
			r.conds = append(r.conds, cond)
		}
		rules = append(rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return compile(defAct, archs, s.Architectures, rules, flags, notify)
}

func compile(defAct libseccomp.ScmpAction, archs []libseccomp.ScmpArch, archNames []specs.Arch, rules []rule,
	flags uint, notify bool) (*Filter, error) {
	sf, err := libseccomp.NewFilter(defAct)
	if err != nil {
		return nil, fmt.Errorf("%s: create filter: %w", field, err)
	}
	defer sf.Release()
	for i, arch := range archs {
		if err := sf.AddArch(arch); err != nil {
			return nil, fmt.Errorf("%s.architectures[%d]: %s cannot be used on this host (libseccomp %s): %w",
				field, i, archNames[i], Version(), err)
		}
	}
	if len(rules) > optimizeAbove {
		// Older libseccomp lacks the attribute; the linear layout is only slower.
		_ = sf.SetOptimize(2)
	}

	f := &Filter{flags: flags, listener: notify}
	for _, r := range rules {
		if r.act == defAct {
			continue // libseccomp refuses rules that repeat the default
		}
		for j, name := range r.names {
			nr, err := libseccomp.GetSyscallFromName(name)
			if err != nil {
				f.skipped = append(f.skipped, name)
				continue
			}
			conds := [][]libseccomp.ScmpCondition{r.conds}
			if r.sameArg {
				conds = conds[:0]
				for _, c := range r.conds {
					conds = append(conds, []libseccomp.ScmpCondition{c})
				}
			}
			for _, c := range conds {
				if len(c) == 0 {
					err = sf.AddRule(nr, r.act)
				} else {
					err = sf.AddRuleConditional(nr, r.act, c)
				}
				if err != nil && nr < 0 {
					// A pseudo-syscall number: the name exists only on architectures this filter does not
					// cover (e.g. getegid32 on x86_64 alone). runc skips such names too.
					f.skipped = append(f.skipped, name)
					break
				}
				if err != nil {
					return nil, fmt.Errorf("%s.names[%d]: add rule for %s: %w", r.field, j, name, err)
				}
			}
		}
	}

	prog, err := export(sf)
	if err != nil {
		return nil, err
	}
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("%s: the compiled filter has %d instructions, the kernel takes at most %d",
			field, len(prog), maxInsns)
	}
	f.prog = prog
	return f, nil
}

// export reads the BPF program libseccomp generates, through a memfd (libseccomp < 2.6 writes only to fds).
func export(sf *libseccomp.ScmpFilter) ([]insn, error) {
	fd, err := unix.MemfdCreate("knast-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("%s: export filter: memfd_create: %w", field, err)
	}
	mf := os.NewFile(uintptr(fd), "knast-seccomp")
	defer mf.Close()
	if err := sf.ExportBPF(mf); err != nil {
		return nil, fmt.Errorf("%s: export filter: %w", field, err)
	}
	if _, err := mf.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: export filter: %w", field, err)
	}
	raw, err := io.ReadAll(mf)
	if err != nil {
		return nil, fmt.Errorf("%s: export filter: %w", field, err)
	}
	const size = 8 // sizeof(struct sock_filter)
	if len(raw) == 0 || len(raw)%size != 0 {
		return nil, fmt.Errorf("%s: export filter: %d bytes is no BPF program", field, len(raw))
	}
	prog := make([]insn, len(raw)/size)
	for i := range prog {
		b := raw[i*size:]
		prog[i] = insn{
			Code: binary.NativeEndian.Uint16(b[0:2]),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:8]),
		}
	}
	return prog, nil
}

// errnoData is the 16-bit SECCOMP_RET_DATA of an action: the errno of ERRNO, the message of TRACE.
func errnoData(a specs.LinuxSeccompAction, ret *uint) (uint16, error) {
	if ret == nil {
		return uint16(unix.EPERM), nil // the runtime-spec default
	}
	if a != specs.ActErrno && a != specs.ActTrace {
		return 0, fmt.Errorf("not allowed with %s (only SCMP_ACT_ERRNO and SCMP_ACT_TRACE return a value)", a)
	}
	if *ret > 0xffff {
		return 0, fmt.Errorf("%d does not fit the 16 bits seccomp returns", *ret)
	}
	return uint16(*ret), nil
}

func action(a specs.LinuxSeccompAction, data uint16, api uint) (libseccomp.ScmpAction, error) {
	for _, sa := range specActions {
		if sa.name != a {
			continue
		}
		if api < sa.api {
			return libseccomp.ActInvalid, fmt.Errorf("%s needs libseccomp API level %d, this host has %d (libseccomp %s)",
				a, sa.api, api, Version())
		}
		switch a {
		case specs.ActKill, specs.ActKillThread:
			// SCMP_ACT_KILL has always meant the thread; runc maps it the same way.
			return libseccomp.ActKillThread, nil
		case specs.ActKillProcess:
			return libseccomp.ActKillProcess, nil
		case specs.ActTrap:
			return libseccomp.ActTrap, nil
		case specs.ActErrno:
			return libseccomp.ActErrno | libseccomp.ScmpAction(data)<<16, nil
		case specs.ActTrace:
			return libseccomp.ActTrace | libseccomp.ScmpAction(data)<<16, nil
		case specs.ActAllow:
			return libseccomp.ActAllow, nil
		case specs.ActLog:
			return libseccomp.ActLog, nil
		case specs.ActNotify:
			return libseccomp.ActNotify, nil
		}
	}
	return libseccomp.ActInvalid, fmt.Errorf("unknown action %q", a)
}

func archOf(a specs.Arch) (libseccomp.ScmpArch, bool) {
	for _, sa := range specArches {
		if sa.name == a {
			return sa.arch, true
		}
	}
	return libseccomp.ArchInvalid, false
}

func opOf(o specs.LinuxSeccompOperator) (libseccomp.ScmpCompareOp, bool) {
	for _, so := range specOps {
		if so.name == o {
			return so.op, true
		}
	}
	return libseccomp.CompareInvalid, false
}

// Supported lists, for `knast features`, what a profile may use on this host: the actions both
// libseccomp and the kernel implement, the architectures this libseccomp can add to a filter here (it
// refuses those of the other byte order), the flags the kernel accepts, and the argument operators.
func Supported() (actions, archs, flags, operators []string) {
	api, _ := libseccomp.GetAPI()
	for _, a := range specActions {
		if api < a.api || !kernelAction(a.ret) {
			continue
		}
		if a.name == specs.ActNotify && !kernelFlag(unix.SECCOMP_FILTER_FLAG_NEW_LISTENER) {
			continue
		}
		actions = append(actions, string(a.name))
	}
	if sf, err := libseccomp.NewFilter(libseccomp.ActAllow); err == nil {
		for _, a := range specArches {
			if sf.AddArch(a.arch) == nil {
				archs = append(archs, string(a.name))
			}
		}
		sf.Release()
	}
	for _, fl := range []struct {
		name  specs.LinuxSeccompFlag
		probe uint
	}{
		{flagTsync, unix.SECCOMP_FILTER_FLAG_TSYNC},
		{specs.LinuxSeccompFlagLog, unix.SECCOMP_FILTER_FLAG_LOG},
		{specs.LinuxSeccompFlagSpecAllow, unix.SECCOMP_FILTER_FLAG_SPEC_ALLOW},
		{specs.LinuxSeccompFlagWaitKillableRecv,
			unix.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | unix.SECCOMP_FILTER_FLAG_NEW_LISTENER},
	} {
		if kernelFlag(fl.probe) {
			flags = append(flags, string(fl.name))
		}
	}
	for _, o := range specOps {
		operators = append(operators, string(o.name))
	}
	return actions, archs, flags, operators
}

// Version is the version of the libseccomp knast runs with ("2.5.4"), for the features annotations.
func Version() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("%d.%d.%d", major, minor, micro)
}
