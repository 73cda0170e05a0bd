package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
)

// maxProgLen is the kernel's limit on a classic BPF program (BPF_MAXINSNS).
const maxProgLen = 4096

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

// filterWire is a Filter as JSON: the runtime compiles a profile once and hands the program to the
// container's init (and to its cache), which then needs no libseccomp.
type filterWire struct {
	Prog     []byte   `json:"prog"` // sock_filter entries, 8 bytes each, little endian
	Flags    uint     `json:"flags,omitempty"`
	Listener bool     `json:"listener,omitempty"`
	Skipped  []string `json:"skipped,omitempty"`
}

// MarshalJSON encodes the compiled program.
func (f *Filter) MarshalJSON() ([]byte, error) {
	w := filterWire{Flags: f.flags, Listener: f.listener, Skipped: f.skipped, Prog: make([]byte, 0, 8*len(f.prog))}
	for _, in := range f.prog {
		w.Prog = binary.LittleEndian.AppendUint16(w.Prog, in.Code)
		w.Prog = append(w.Prog, in.Jt, in.Jf)
		w.Prog = binary.LittleEndian.AppendUint32(w.Prog, in.K)
	}
	return json.Marshal(w)
}

// UnmarshalJSON decodes a program written by MarshalJSON.
func (f *Filter) UnmarshalJSON(b []byte) error {
	var w filterWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if len(w.Prog)%8 != 0 || len(w.Prog) == 0 || len(w.Prog)/8 > maxProgLen {
		return fmt.Errorf("seccomp: encoded filter of %d bytes is not a program", len(w.Prog))
	}
	f.prog = make([]insn, 0, len(w.Prog)/8)
	for p := w.Prog; len(p) > 0; p = p[8:] {
		f.prog = append(f.prog, insn{Code: binary.LittleEndian.Uint16(p), Jt: p[2], Jf: p[3], K: binary.LittleEndian.Uint32(p[4:])})
	}
	f.flags, f.listener, f.skipped = w.Flags, w.Listener, w.Skipped
	return nil
}
