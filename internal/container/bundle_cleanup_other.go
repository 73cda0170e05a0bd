//go:build !linux

package container

import "golang.org/x/sys/unix"

// detach: without lazy unmounts, a busy overlay is forced off.
func detach(path string) error { return unix.Unmount(path, unix.MNT_FORCE) }
