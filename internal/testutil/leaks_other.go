//go:build !linux

package testutil

import (
	"errors"
	"fmt"
)

// TakeSnapshot is only implemented on Linux, where it reads /proc.
func TakeSnapshot(sc Scope) (Snapshot, error) {
	return Snapshot{}, fmt.Errorf("snapshot: %w", errors.ErrUnsupported)
}

// LiveProc is only implemented on Linux; elsewhere it reports no process.
func LiveProc(pid int) (p Proc, ok bool) {
	return Proc{}, false
}

// RemoveCgroupParent does nothing: knast makes cgroups on Linux only.
func RemoveCgroupParent(root string) {}
