package freebsd

import (
	"encoding/binary"
	"fmt"
)

// struct kinfo_proc (<sys/user.h>) on 64-bit FreeBSD, as the kern.proc sysctls return it; x/sys does
// not define it. KINFO_PROC_SIZE is 1088 on amd64, arm64 and riscv64. The offsets are ABI: user.h has
// new fields take spare space, so ki_jid has been at 592 since jails got ids.
const (
	KinfoProcSize = 1088
	kiPid         = 72  // ki_pid
	kiStat        = 388 // ki_stat
	kiJid         = 592 // ki_jid
	procSStop     = 4   // SSTOP
	procSZomb     = 5   // SZOMB
)

// Proc is what knast reads of one kinfo_proc.
type Proc struct {
	Pid     int
	Jid     int
	Stopped bool
	Zombie  bool
}

// ParseProcs splits a kern.proc.proc answer (an array of kinfo_proc) into processes.
func ParseProcs(b []byte) ([]Proc, error) {
	if len(b)%KinfoProcSize != 0 {
		return nil, fmt.Errorf("kern.proc: %d bytes is not a multiple of kinfo_proc's %d", len(b), KinfoProcSize)
	}
	ne := binary.NativeEndian
	out := make([]Proc, 0, len(b)/KinfoProcSize)
	for off := 0; off < len(b); off += KinfoProcSize {
		k := b[off : off+KinfoProcSize]
		if size := int(int32(ne.Uint32(k))); size != KinfoProcSize {
			return nil, fmt.Errorf("kern.proc: kinfo_proc of %d bytes, want %d", size, KinfoProcSize)
		}
		out = append(out, Proc{
			Pid:     int(int32(ne.Uint32(k[kiPid:]))),
			Jid:     int(int32(ne.Uint32(k[kiJid:]))),
			Stopped: k[kiStat] == procSStop,
			Zombie:  k[kiStat] == procSZomb,
		})
	}
	return out, nil
}

// InJail filters procs to the live (not zombie) processes of jail jid.
func InJail(procs []Proc, jid int) []Proc {
	var out []Proc
	for _, p := range procs {
		if p.Jid == jid && !p.Zombie {
			out = append(out, p)
		}
	}
	return out
}
