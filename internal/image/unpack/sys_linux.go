package unpack

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// dirOpenFlags: lookups only need a handle, which O_PATH gives without read permission.
const dirOpenFlags = unix.O_PATH

// isNotDirOrLink reports an openat(O_DIRECTORY|O_NOFOLLOW) failure that may be a symlink.
func isNotDirOrLink(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)
}

func mknodAt(dirfd int, name string, mode uint32, major, minor int64) error {
	return unix.Mknodat(dirfd, name, mode, int(unix.Mkdev(uint32(major), uint32(minor))))
}

// chmodAt changes the mode of name in dirfd without following a final symlink: fchmodat2 where
// the kernel has it (6.6+), else through an O_PATH handle's /proc/self/fd magic link.
func chmodAt(dirfd int, name string, mode uint32) error {
	err := unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOSYS) {
		return err
	}
	return withHandle(dirfd, name, func(p string) error { return unix.Chmod(p, mode) })
}

// withHandle opens name (not following a final symlink) as O_PATH and passes fn its
// /proc/self/fd path, which names exactly that inode.
func withHandle(dirfd int, name string, fn func(string) error) error {
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	defer unix.Close(fd)
	return fn("/proc/self/fd/" + strconv.Itoa(fd))
}

// setXattrs applies xs to name in dirfd (or to fd when >= 0), first removing other xattrs when
// clear is set. Each per-xattr error goes to skip, which returns nil to tolerate it.
func setXattrs(dirfd int, name string, fd int, xs []xattr, clear bool, skip func(string, error) error) error {
	if len(xs) == 0 && !clear {
		return nil
	}
	if fd >= 0 {
		return applyXattrs(xs, clear, skip,
			func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) },
			func(b []byte) (int, error) { return unix.Flistxattr(fd, b) },
			func(k string) error { return unix.Fremovexattr(fd, k) })
	}
	return withHandle(dirfd, name, func(p string) error {
		// p is a magic link to the inode itself, so the non-l calls act on a symlink, not its target.
		return applyXattrs(xs, clear, skip,
			func(k string, v []byte) error { return unix.Setxattr(p, k, v, 0) },
			func(b []byte) (int, error) { return unix.Listxattr(p, b) },
			func(k string) error { return unix.Removexattr(p, k) })
	})
}

func applyXattrs(xs []xattr, clear bool, skip func(string, error) error,
	set func(string, []byte) error, list func([]byte) (int, error), remove func(string) error) error {
	if clear {
		names, err := listXattrs(list)
		if err != nil {
			if err := skip("*", err); err != nil {
				return err
			}
		}
		for _, n := range names {
			if ignoredXattr(n) {
				continue
			}
			if err := remove(n); err != nil && !errors.Is(err, unix.ENODATA) {
				if err := skip(n, err); err != nil {
					return err
				}
			}
		}
	}
	for _, x := range xs {
		if err := set(x.name, x.value); err != nil {
			if err := skip(x.name, err); err != nil {
				return err
			}
		}
	}
	return nil
}

func listXattrs(list func([]byte) (int, error)) ([]string, error) {
	n, err := list(nil)
	if err != nil || n == 0 {
		return nil, err
	}
	buf := make([]byte, n)
	if n, err = list(buf); err != nil || n == 0 {
		// 0: the size query counted names the second call filters (overlayfs hides its own).
		return nil, err
	}
	return strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00"), nil
}

// xattrUnsupported reports an xattr error that means "this filesystem or caller cannot".
func xattrUnsupported(err error) bool {
	return errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP)
}
