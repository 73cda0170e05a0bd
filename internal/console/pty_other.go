//go:build unix && !linux && !freebsd

package console

import (
	"errors"
	"os"
)

// Termios requests are never used here: NewPty fails first.
const (
	ioctlGetTermios = 0
	ioctlSetTermios = 0
)

// NewPty is only implemented on Linux and FreeBSD.
func NewPty() (master *os.File, slavePath string, err error) {
	return nil, "", errors.ErrUnsupported
}
