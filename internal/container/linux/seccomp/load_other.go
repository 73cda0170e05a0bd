//go:build !linux

package seccomp

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Load installs the filter; seccomp exists on Linux only.
func (f *Filter) Load() (notifyFd int, err error) {
	return -1, fmt.Errorf("seccomp: %w", errors.ErrUnsupported)
}

// SendNotifyFd sends the seccomp notify fd to a listener; seccomp exists on Linux only.
func SendNotifyFd(listenerPath string, fd int, state specs.ContainerProcessState) error {
	return fmt.Errorf("seccomp: %w", errors.ErrUnsupported)
}
