package freebsd

import (
	"encoding/binary"
	"slices"
	"strings"
	"testing"
)

// kinfo builds one struct kinfo_proc with the fields knast reads.
func kinfo(pid, jid int, stat byte) []byte {
	b := make([]byte, KinfoProcSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], KinfoProcSize)
	le.PutUint32(b[kiPid:], uint32(pid))
	le.PutUint32(b[kiJid:], uint32(jid))
	b[kiStat] = stat
	return b
}

func TestParseProcs(t *testing.T) {
	const sRun, sSleep = 2, 3
	buf := slices.Concat(kinfo(1, 0, sSleep), kinfo(700, 5, sRun), kinfo(701, 5, procSStop), kinfo(702, 5, procSZomb), kinfo(800, 6, sSleep))
	procs, err := ParseProcs(buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 5 {
		t.Fatalf("%d processes, want 5", len(procs))
	}
	got := InJail(procs, 5)
	want := []Proc{{Pid: 700, Jid: 5}, {Pid: 701, Jid: 5, Stopped: true}}
	if !slices.Equal(got, want) {
		t.Errorf("InJail(5) = %+v, want %+v (zombies left out)", got, want)
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"short", buf[:100], "not a multiple"},
		{"wrong structsize", func() []byte { b := kinfo(1, 0, 0); binary.LittleEndian.PutUint32(b, 99); return b }(), "kinfo_proc of 99"},
	} {
		if _, err := ParseProcs(tc.b); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}

func TestRlimit(t *testing.T) {
	for _, tc := range []struct {
		name string
		want int
	}{{"RLIMIT_NOFILE", 8}, {"RLIMIT_AS", 10}, {"RLIMIT_VMEM", 10}, {"RLIMIT_NPROC", 7}, {"RLIMIT_CPU", 0}, {"RLIMIT_PIPEBUF", 15}} {
		got, err := Rlimit(tc.name)
		if err != nil || got != tc.want {
			t.Errorf("Rlimit(%s) = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := Rlimit("RLIMIT_RTPRIO"); err == nil {
		t.Error("a Linux-only rlimit was accepted")
	}
}
