package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// procPollInterval is how often WaitExit looks at /proc when pidfds are not
// available.
const procPollInterval = 5 * time.Millisecond

// initComm is the container init's name until it execs the user process (nsenter_name in package nsenter).
const initComm = "knast:[init]" // TestInitCommMatchesC holds the C side to it

// initExeced reports whether the init pid has exec'd the user process (it no longer bears initComm). A
// pid that is gone reports false: the caller checks that separately.
func initExeced(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	return err == nil && string(bytes.TrimSuffix(b, []byte("\n"))) != initComm
}

// ProcStartTime returns the start time of pid in clock ticks since boot
// (field 22 of /proc/<pid>/stat).
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
	state, got, err := procStat(pid)
	return err == nil && got == start && !procDead(state)
}

// procDead reports whether a /proc state letter means the process has exited.
func procDead(state byte) bool {
	return state == 'Z' || state == 'X' || state == 'x'
}

// procStat reads the state letter and start time of pid.
func procStat(pid int) (state byte, start uint64, err error) {
	if pid <= 0 {
		return 0, 0, fmt.Errorf("invalid pid %d", pid)
	}
	p := "/proc/" + strconv.Itoa(pid) + "/stat"
	data, err := os.ReadFile(p)
	if err != nil {
		return 0, 0, fmt.Errorf("read %s: %w", p, err)
	}
	state, start, err = procParseStat(data)
	if err != nil {
		return 0, 0, fmt.Errorf("parse %s: %w", p, err)
	}
	return state, start, nil
}

// procParseStat parses a /proc/<pid>/stat line. comm (field 2) is in
// parentheses and may itself contain spaces and ')', so fields are counted
// from the last ')'.
func procParseStat(data []byte) (state byte, start uint64, err error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, errors.New("no ')' after comm")
	}
	// After ')': field 3 (state) onwards; starttime is field 22.
	fields := bytes.Fields(data[i+1:])
	const startIdx = 22 - 3
	if len(fields) <= startIdx {
		return 0, 0, fmt.Errorf("%d fields after comm, want more than %d", len(fields), startIdx)
	}
	if len(fields[0]) != 1 {
		return 0, 0, fmt.Errorf("bad state %q", fields[0])
	}
	start, err = strconv.ParseUint(string(fields[startIdx]), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("bad start time: %w", err)
	}
	return fields[0][0], start, nil
}

// WaitExit blocks until pid, started at start, has exited (a zombie counts)
// or ctx ends. pid need not be our child: it waits on a pidfd, or polls /proc
// where pidfds are unavailable.
func WaitExit(ctx context.Context, pid int, start uint64) error {
	if !ProcAlive(pid, start) {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return procWaitPoll(ctx, pid, start)
	}
	defer unix.Close(fd)
	// The pid may have been reused between the check and the open.
	if !ProcAlive(pid, start) {
		return nil
	}
	return procWaitPidfd(ctx, fd)
}

// procWaitPidfd waits for a pidfd to become readable (the process exited),
// waking up regularly to notice the end of ctx.
func procWaitPidfd(ctx context.Context, fd int) error {
	const slice = 20 // ms
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := unix.Poll(fds, slice)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 && fds[0].Revents != 0 {
			return nil
		}
	}
}

func procWaitPoll(ctx context.Context, pid int, start uint64) error {
	t := time.NewTicker(procPollInterval)
	defer t.Stop()
	for ProcAlive(pid, start) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
