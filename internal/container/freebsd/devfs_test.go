package freebsd

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// The expected ioctl numbers are computed by hand from the headers:
// sys/sys/ioccom.h: _IOC(inout,group,num,len) = inout | (len & IOCPARM_MASK) << 16 | group << 8 | num,
// IOC_IN 0x80000000, IOC_OUT 0x40000000, IOCPARM_MASK 0x1fff;
// sys/fs/devfs/devfs.h: DEVFSIO_RADD _IOWR('D', 0, struct devfs_rule), DEVFSIO_RDEL _IOW('D', 1, devfs_rid),
// DEVFSIO_RAPPLY _IOW('D', 2, struct devfs_rule), DEVFSIO_SUSE _IOW('D', 10, devfs_rsnum),
// DEVFSIO_SAPPLY _IOW('D', 11, devfs_rsnum); sizeof(struct devfs_rule) = 236, devfs_rid uint32_t,
// devfs_rsnum uint16_t; sys/sys/sockio.h: SIOCSIFVNET _IOWR('i', 90, struct ifreq), sizeof 32 (x/sys
// unix.SIOCSIFVNET for freebsd is 0xc020695a).
func TestIoctlNumbers(t *testing.T) {
	for _, tc := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"DEVFSIO_RADD", DevfsIORAdd, 0xc0ec4400},
		{"DEVFSIO_RDEL", DevfsIORDel, 0x80044401},
		{"DEVFSIO_RAPPLY", DevfsIORApply, 0x80ec4402},
		{"DEVFSIO_SUSE", DevfsIOSUse, 0x8002440a},
		{"DEVFSIO_SAPPLY", DevfsIOSApply, 0x8002440b},
		{"SIOCSIFVNET", SIOCSIFVNET, 0xc020695a},
		// sys/sys/ttycom.h: TIOCSCTTY _IO('t', 97), x/sys 0x20007461.
		{"TIOCSCTTY", IOC(iocVoid, 't', 97, 0), 0x20007461},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, want %#x", tc.name, tc.got, tc.want)
		}
	}
}

func TestDevfsRuleMarshal(t *testing.T) {
	uid, mode := uint32(0), uint16(0o660)
	r := DevfsRule{ID: RuleID(4, 7), Pattern: "bpf*", Unhide: true, UID: &uid, Mode: &mode}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != DevfsRuleSize {
		t.Fatalf("%d bytes, want %d", len(b), DevfsRuleSize)
	}
	le := binary.LittleEndian
	for _, f := range []struct {
		name string
		got  uint32
		want uint32
	}{
		{"dr_magic", le.Uint32(b[0:]), 0xdb0a087a},
		{"dr_id", le.Uint32(b[4:]), 4<<16 | 7},
		{"dr_icond", le.Uint32(b[8:]), drcPathPtrn},
		{"dr_dswflags", le.Uint32(b[12:]), 0},
		{"dr_iacts", le.Uint32(b[216:]), draBActs | draUID | draMode},
		{"dr_bacts", le.Uint32(b[220:]), drbUnhide},
		{"dr_uid", le.Uint32(b[224:]), 0},
		{"dr_gid", le.Uint32(b[228:]), 0},
		{"dr_mode", uint32(le.Uint16(b[232:])), 0o660},
		{"dr_incset", uint32(le.Uint16(b[234:])), 0},
	} {
		if f.got != f.want {
			t.Errorf("%s = %#x, want %#x", f.name, f.got, f.want)
		}
	}
	if got := string(b[16:20]); got != "bpf*" || b[20] != 0 {
		t.Errorf("dr_pathptrn = %q, want NUL-terminated bpf*", b[16:24])
	}
	if _, err := (DevfsRule{Pattern: strings.Repeat("a", 200)}).Marshal(); err == nil {
		t.Error("a 200-byte pattern (no room for the NUL) was accepted")
	}
}

func TestDeviceRules(t *testing.T) {
	m := os.FileMode(448)
	rules, err := DeviceRules([]specs.FreeBSDDevice{{Path: "pf", Mode: &m}, {Path: "/dev/bpf0"}, {Path: "usb/0.1.0"}})
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		pattern string
		mode    int
	}{{"pf", 0o700}, {"bpf0", -1}, {"usb/0.1.0", -1}}
	for i, w := range want {
		r := rules[i]
		if r.Pattern != w.pattern || !r.Unhide || r.Hide {
			t.Errorf("rule %d = %+v, want unhide %s", i, r, w.pattern)
		}
		if (r.Mode == nil) != (w.mode < 0) || (r.Mode != nil && int(*r.Mode) != w.mode) {
			t.Errorf("rule %d mode = %v, want %o", i, r.Mode, w.mode)
		}
	}
	big := os.FileMode(0o10000)
	for _, bad := range []specs.FreeBSDDevice{{Path: ""}, {Path: "../etc/passwd"}, {Path: "/dev/"}, {Path: "pf", Mode: &big}} {
		if _, err := DeviceRules([]specs.FreeBSDDevice{bad}); err == nil {
			t.Errorf("device %+v was accepted", bad)
		}
	}
}

func TestIfreqJid(t *testing.T) {
	b, err := IfreqJid("epair0b", 42)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != IfreqSize || string(b[:8]) != "epair0b\x00" || binary.LittleEndian.Uint32(b[16:]) != 42 {
		t.Errorf("ifreq = %x", b)
	}
	for _, bad := range []string{"", "a-name-that-is-16", "a\x00b"} {
		if _, err := IfreqJid(bad, 1); err == nil {
			t.Errorf("interface %q was accepted", bad)
		}
	}
}
