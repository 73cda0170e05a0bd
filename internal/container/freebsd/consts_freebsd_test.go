//go:build freebsd

package freebsd

import (
	"testing"

	"golang.org/x/sys/unix"
)

// On a FreeBSD host the hand-written constants are checked against x/sys's, generated from the headers.
func TestConstantsMatchXSys(t *testing.T) {
	for _, tc := range []struct {
		name      string
		got, want uint64
	}{
		{"MNT_RDONLY", MntRdonly, unix.MNT_RDONLY},
		{"MNT_SYNCHRONOUS", MntSynchronous, unix.MNT_SYNCHRONOUS},
		{"MNT_NOEXEC", MntNoexec, unix.MNT_NOEXEC},
		{"MNT_NOSUID", MntNosuid, unix.MNT_NOSUID},
		{"MNT_ASYNC", MntAsync, unix.MNT_ASYNC},
		{"MNT_FORCE", MntForce, unix.MNT_FORCE},
		{"MNT_NOSYMFOLLOW", MntNosymfollow, unix.MNT_NOSYMFOLLOW},
		{"MNT_NOATIME", MntNoatime, unix.MNT_NOATIME},
		{"SIOCSIFVNET", uint64(SIOCSIFVNET), unix.SIOCSIFVNET},
		{"TIOCSCTTY", uint64(IOC(iocVoid, 't', 97, 0)), unix.TIOCSCTTY},
		{"RLIMIT_NOFILE", uint64(rlimits["RLIMIT_NOFILE"]), unix.RLIMIT_NOFILE},
		{"RLIMIT_AS", uint64(rlimits["RLIMIT_AS"]), unix.RLIMIT_AS},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %#x, x/sys has %#x", tc.name, tc.got, tc.want)
		}
	}
}

// The running kernel's kinfo_proc must have the size the parser assumes.
func TestKinfoProcSize(t *testing.T) {
	b, err := unix.SysctlRaw("kern.proc.pid", unix.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	procs, err := ParseProcs(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(procs) != 1 || procs[0].Pid != unix.Getpid() || procs[0].Jid < 0 {
		t.Errorf("kern.proc.pid of self parsed as %+v", procs)
	}
}
