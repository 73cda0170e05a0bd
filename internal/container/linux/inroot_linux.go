//go:build linux

package linux

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"
)

// The rootfs code resolves every mount target inside the container's root. openat2 with RESOLVE_IN_ROOT
// does that in the kernel in one syscall: symlinks resolve as if root were "/", ".." stops at root, and
// RESOLVE_NO_MAGICLINKS refuses /proc magic links. pathrs-lite makes the same openat2 call but then names
// the result through a verified private procfs, about thirty syscalls per path; a default container
// resolves some forty paths. pathrs-lite stays the fallback where openat2 is missing or filtered, and does
// the creating in mkdirAllInRoot.

// inRootResolve is how every rootfs path is resolved.
const inRootResolve = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS

// inRootRetries bounds the retries of openat2, which answers EAGAIN when a rename or mount raced the
// lookup (the kernel cannot then vouch for the walk).
const inRootRetries = 8

// openat2InRoot opens path below root as an O_PATH handle plus extra flags. ok is false when openat2
// itself is unusable here (old kernel, seccomp filter) or kept answering EAGAIN: the caller falls back.
func openat2InRoot(root *os.File, path string, extra int) (f *os.File, ok bool, err error) {
	how := &unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_CLOEXEC | extra), Resolve: inRootResolve}
	for range inRootRetries {
		fd, err := unix.Openat2(int(root.Fd()), path, how)
		switch {
		case err == nil:
			return os.NewFile(uintptr(fd), filepath.Join(root.Name(), path)), true, nil
		case errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
			// An O_PATH open checks no permission that answers EPERM: a filter refused the syscall.
			return nil, false, nil
		default:
			return nil, true, &os.PathError{Op: "openat2", Path: filepath.Join(root.Name(), path), Err: err}
		}
	}
	return nil, false, nil
}

// openInRoot opens path below root (an O_PATH handle), like pathrs.OpenatInRoot.
func openInRoot(root *os.File, path string) (*os.File, error) {
	f, ok, err := openat2InRoot(root, path, 0)
	if ok {
		return f, err
	}
	return pathrs.OpenatInRoot(root, path)
}

// openInRootPath is openInRoot below the directory rootPath (after pivot_root, "/").
func openInRootPath(rootPath, path string) (*os.File, error) {
	root, err := os.OpenFile(rootPath, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	return openInRoot(root, path)
}

// mkdirAllInRoot returns a handle on directory path below root, creating what is missing, like
// pathrs.MkdirAllHandle. A directory already there (the usual /proc, /dev, /sys) costs one openat2; a
// missing one is made component by component: each parent is resolved from root with openat2, and the
// new name is created with mkdirat relative to that parent's handle, so neither step can leave root even
// while the tree is being renamed. Anything unusual (no openat2, "..", a file in the way) goes to pathrs.
func mkdirAllInRoot(root *os.File, path string, mode os.FileMode) (*os.File, error) {
	f, ok, err := openat2InRoot(root, path, unix.O_DIRECTORY)
	switch {
	case ok && err == nil:
		return f, nil
	case !ok || !errors.Is(err, unix.ENOENT) || slices.Contains(strings.Split(path, "/"), ".."):
		return pathrs.MkdirAllHandle(root, path, mode)
	}
	parent, err := openat2Dir(root, ".")
	if err != nil {
		return pathrs.MkdirAllHandle(root, path, mode)
	}
	prefix := ""
	for _, name := range strings.Split(filepath.Clean("/"+path), "/") {
		if name == "" {
			continue
		}
		prefix += "/" + name
		next, err := openat2Dir(root, prefix)
		if errors.Is(err, unix.ENOENT) {
			if merr := unix.Mkdirat(int(parent.Fd()), name, uint32(mode.Perm())); merr != nil && !errors.Is(merr, unix.EEXIST) {
				parent.Close()
				return nil, &os.PathError{Op: "mkdirat", Path: filepath.Join(root.Name(), prefix), Err: merr}
			}
			next, err = openat2Dir(root, prefix)
		}
		parent.Close()
		if err != nil {
			return pathrs.MkdirAllHandle(root, path, mode)
		}
		parent = next
	}
	return parent, nil
}

// openat2Dir is openat2InRoot of a directory, with "unusable" folded into an error.
func openat2Dir(root *os.File, path string) (*os.File, error) {
	f, ok, err := openat2InRoot(root, path, unix.O_DIRECTORY)
	if !ok {
		return nil, errors.ErrUnsupported
	}
	return f, err
}
