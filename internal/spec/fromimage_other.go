//go:build !linux

package spec

import (
	"fmt"
	"os"
	"syscall"
)

// openInRoot opens the regular file name for reading inside rootfs; os.Root refuses symlinks that
// leave it. O_NONBLOCK keeps a FIFO from blocking the open; the type is checked before reading.
func openInRoot(rootfs, name string) (*os.File, error) {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	f, err := r.OpenFile(name[1:], os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat: %w", err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("not a regular file (%s)", fi.Mode().Type())
	}
	return f, nil
}
