//go:build freebsd && (amd64 || arm64 || riscv64)

package container

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Offsets into struct kinfo_proc (<sys/user.h>) on 64-bit FreeBSD, where its
// size (KINFO_PROC_SIZE) is 1088; x/sys does not define the struct.
const (
	procKinfoSize      = 1088
	procKinfoPid       = 72  // ki_pid
	procKinfoStartSec  = 336 // ki_start.tv_sec
	procKinfoStartUsec = 344 // ki_start.tv_usec
	procKinfoStat      = 388 // ki_stat
	procSZOMB          = 5   // ki_stat of a zombie
)

// procPollInterval is how often WaitExit re-checks ctx while waiting.
const procPollInterval = 20 * time.Millisecond

// ProcStartTime returns the start time of pid in microseconds since the
// epoch (kinfo_proc ki_start).
func ProcStartTime(pid int) (uint64, error) {
	_, start, err := procStat(pid)
	return start, err
}

// ProcAlive reports whether pid is alive and started at start: a zombie or a
// process with another start time (the pid was reused) is not.
func ProcAlive(pid int, start uint64) bool {
	if pid <= 0 {
		return false
	}
	zombie, got, err := procStat(pid)
	return err == nil && got == start && !zombie
}

func procStat(pid int) (zombie bool, start uint64, err error) {
	if pid <= 0 {
		return false, 0, fmt.Errorf("invalid pid %d", pid)
	}
	b, err := unix.SysctlRaw("kern.proc.pid", pid)
	if err != nil {
		return false, 0, fmt.Errorf("sysctl kern.proc.pid.%d: %w", pid, err)
	}
	if len(b) == 0 {
		return false, 0, fmt.Errorf("sysctl kern.proc.pid.%d: %w", pid, unix.ESRCH)
	}
	if len(b) < procKinfoSize {
		return false, 0, fmt.Errorf("sysctl kern.proc.pid.%d: %d bytes, want %d", pid, len(b), procKinfoSize)
	}
	ne := binary.NativeEndian
	if size := int(int32(ne.Uint32(b))); size != procKinfoSize {
		return false, 0, fmt.Errorf("kinfo_proc of %d bytes, want %d", size, procKinfoSize)
	}
	if got := int(int32(ne.Uint32(b[procKinfoPid:]))); got != pid {
		return false, 0, fmt.Errorf("kinfo_proc for pid %d, want %d", got, pid)
	}
	sec := ne.Uint64(b[procKinfoStartSec:])
	usec := ne.Uint64(b[procKinfoStartUsec:])
	return b[procKinfoStat] == procSZOMB, sec*1_000_000 + usec, nil
}

// WaitExit blocks until pid, started at start, has exited (a zombie counts)
// or ctx ends, using a kqueue EVFILT_PROC/NOTE_EXIT filter, which works for
// processes that are not our children.
func WaitExit(ctx context.Context, pid int, start uint64) error {
	if !ProcAlive(pid, start) {
		return nil
	}
	kq, err := unix.Kqueue()
	if err != nil {
		return fmt.Errorf("kqueue: %w", err)
	}
	defer unix.Close(kq)
	var ev unix.Kevent_t
	unix.SetKevent(&ev, pid, unix.EVFILT_PROC, unix.EV_ADD|unix.EV_ONESHOT)
	ev.Fflags = unix.NOTE_EXIT
	if _, err := unix.Kevent(kq, []unix.Kevent_t{ev}, nil, nil); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return fmt.Errorf("kevent for pid %d: %w", pid, err)
	}
	// The process may have exited, or the pid been reused, before the filter
	// was in place.
	if !ProcAlive(pid, start) {
		return nil
	}
	out := make([]unix.Kevent_t, 1)
	ts := unix.NsecToTimespec(int64(procPollInterval))
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Kevent(kq, nil, out, &ts)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("kevent wait for pid %d: %w", pid, err)
		}
		if n > 0 {
			return nil
		}
	}
}

// initExeced reports false: only the Linux init is named until it execs, so a start that missed the
// answer on the exec fifo notices by the fifo's removal alone.
func initExeced(pid int) bool { return false }
