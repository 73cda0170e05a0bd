package container

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ParseSignal parses a signal the way runc's kill does: a number, or a name
// with or without the SIG prefix in any case ("TERM", "SIGTERM", "sigterm"),
// plus the real-time names "RTMIN", "RTMIN+n", "RTMAX" and "RTMAX-n".
func ParseSignal(s string) (unix.Signal, error) {
	sigMax, rtMin, rtMax := sigLimits()
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > sigMax {
			return 0, fmt.Errorf("invalid signal %q: out of range 1-%d", s, sigMax)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	name = strings.TrimPrefix(name, "SIG")
	if rt, ok, err := sigParseRT(name, rtMin, rtMax); ok {
		if err != nil {
			return 0, fmt.Errorf("invalid signal %q: %w", s, err)
		}
		return rt, nil
	}
	if sig := unix.SignalNum("SIG" + name); sig != 0 && name != "" {
		return sig, nil
	}
	return 0, fmt.Errorf("invalid signal %q", s)
}

// sigLimits returns the highest signal number and the real-time range as
// user space sees it (glibc keeps Linux's 32 and 33 for itself).
func sigLimits() (sigMax, rtMin, rtMax int) {
	switch runtime.GOOS {
	case "linux":
		return 64, 34, 64
	case "freebsd":
		return 128, 65, 126
	default:
		return 31, 0, 0
	}
}

// sigParseRT handles "RTMIN[+n]" and "RTMAX[-n]"; ok reports whether name is
// of that form at all.
func sigParseRT(name string, rtMin, rtMax int) (sig unix.Signal, ok bool, err error) {
	var base, sign int
	var rest string
	switch {
	case strings.HasPrefix(name, "RTMIN"):
		base, sign, rest = rtMin, 1, name[len("RTMIN"):]
	case strings.HasPrefix(name, "RTMAX"):
		base, sign, rest = rtMax, -1, name[len("RTMAX"):]
	default:
		return 0, false, nil
	}
	if rtMin == 0 {
		return 0, true, fmt.Errorf("no real-time signals on %s", runtime.GOOS)
	}
	off := 0
	if rest != "" {
		want := "+"
		if sign < 0 {
			want = "-"
		}
		if !strings.HasPrefix(rest, want) {
			return 0, true, fmt.Errorf("want %s%sN", name[:5], want)
		}
		off, err = strconv.Atoi(rest[1:])
		if err != nil || off < 0 || rest[1:] == "" || rest[1] == '+' || rest[1] == '-' {
			return 0, true, fmt.Errorf("bad offset %q", rest[1:])
		}
	}
	n := base + sign*off
	if n < rtMin || n > rtMax {
		return 0, true, fmt.Errorf("out of range %d-%d", rtMin, rtMax)
	}
	return unix.Signal(n), true, nil
}
