package unpack

import (
	"errors"

	"golang.org/x/sys/unix"
)

// dirOpenFlags: FreeBSD lookups open directories read-only.
const dirOpenFlags = unix.O_RDONLY

// isNotDirOrLink reports an openat(O_DIRECTORY|O_NOFOLLOW) failure that may be a symlink
// (FreeBSD answers EMLINK for O_NOFOLLOW on a symlink).
func isNotDirOrLink(err error) bool {
	return errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EMLINK)
}

func mknodAt(dirfd int, name string, mode uint32, major, minor int64) error {
	return unix.Mknodat(dirfd, name, mode, unix.Mkdev(uint32(major), uint32(minor)))
}

// chmodAt changes the mode of name in dirfd without following a final symlink.
func chmodAt(dirfd int, name string, mode uint32) error {
	return unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
}

// setXattrs: Linux xattr namespaces have no FreeBSD equivalent here, so each one is reported to
// skip as unsupported.
func setXattrs(_ int, _ string, _ int, xs []xattr, _ bool, skip func(string, error) error) error {
	for _, x := range xs {
		if err := skip(x.name, errors.ErrUnsupported); err != nil {
			return err
		}
	}
	return nil
}

func xattrUnsupported(err error) bool {
	return errors.Is(err, errors.ErrUnsupported) || errors.Is(err, unix.EOPNOTSUPP)
}
