package container

import "golang.org/x/sys/unix"

func detach(path string) error { return unix.Unmount(path, unix.MNT_DETACH) }
