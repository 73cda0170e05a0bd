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
