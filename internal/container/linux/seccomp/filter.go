package seccomp

// insn is one classic BPF instruction, laid out like the kernel's struct sock_filter.
type insn struct {
	Code   uint16
	Jt, Jf uint8
	K      uint32
}

// Filter is a compiled profile, ready to be installed by Load. It holds no C resources.
type Filter struct {
	prog     []insn
	flags    uint // SECCOMP_FILTER_FLAG_* bits passed to seccomp(2)
	listener bool // the profile uses SCMP_ACT_NOTIFY: Load returns a notify fd
	skipped  []string
}

// Notify reports whether the profile uses SCMP_ACT_NOTIFY, that is whether Load returns a notify fd that
// must be sent to the profile's listenerPath.
func (f *Filter) Notify() bool { return f != nil && f.listener }

// Skipped lists the syscall names of the profile that this host's libseccomp does not know and that were
// therefore left out of the filter (worth a debug log line, not an error: runc does the same).
func (f *Filter) Skipped() []string {
	if f == nil {
		return nil
	}
	return append([]string(nil), f.skipped...)
}

// Len is the number of BPF instructions of the compiled filter.
func (f *Filter) Len() int {
	if f == nil {
		return 0
	}
	return len(f.prog)
}
