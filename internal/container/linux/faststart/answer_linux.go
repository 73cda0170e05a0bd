//go:build linux

package faststart

import (
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// answerName is the memfd the C start leaves its answer in (faststart_linux.c).
const answerName = "/memfd:knast-start-answer"

// Answer returns what the C start read from the exec fifo when it read something it does not handle
// itself, and ok=false when it did not (the fifo is then untouched, and the start is Go's to do). It
// closes the memfd.
func Answer() (answer []byte, ok bool, err error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, false, fmt.Errorf("list own fds: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || !strings.HasPrefix(target, answerName) {
			continue
		}
		f := os.NewFile(uintptr(fd), "start answer")
		defer f.Close()
		if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
			return nil, false, fmt.Errorf("start answer: %w", err)
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return nil, false, fmt.Errorf("start answer: %w", err)
		}
		return b, true, nil
	}
	return nil, false, nil
}
