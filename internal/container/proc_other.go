//go:build !linux && !(freebsd && (amd64 || arm64 || riscv64))

package container

import (
	"context"
	"errors"
)

// ProcStartTime is implemented on Linux and 64-bit FreeBSD only.
func ProcStartTime(pid int) (uint64, error) { return 0, errors.ErrUnsupported }

// ProcAlive reports false where process start times cannot be read.
func ProcAlive(pid int, start uint64) bool { return false }

// WaitExit is implemented on Linux and 64-bit FreeBSD only.
func WaitExit(ctx context.Context, pid int, start uint64) error { return errors.ErrUnsupported }

// initExeced reports false: only the Linux init is named until it execs, so a start that missed the
// answer on the exec fifo notices by the fifo's removal alone.
func initExeced(pid int) bool { return false }
