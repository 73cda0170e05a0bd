package build

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/image/unpack"
)

// owner is a uid:gid pair.
type owner struct{ uid, gid int }

// copyOptions are COPY's and ADD's flags, resolved.
type copyOptions struct {
	chown *owner
	chmod *uint32
	// unpack extracts local tar archives (ADD).
	unpack bool
}

// copier writes into one stage root filesystem. Every path is resolved inside the root (pathrs-lite:
// openat2 RESOLVE_IN_ROOT where the kernel has it), and entries are made relative to directory fds
// with O_NOFOLLOW, so a symlink in the image can never lead a write outside.
type copier struct {
	ctx    context.Context
	rootfs string
	root   *os.File
	dirs   []dirTime
}

type dirTime struct {
	fd    int
	mtime time.Time
}

func newCopier(ctx context.Context, rootfs string) (*copier, error) {
	f, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	return &copier{ctx: ctx, rootfs: rootfs, root: f}, nil
}

// close sets the copied directories' times (after their contents were written) and releases fds.
func (c *copier) close() error {
	var first error
	for i := len(c.dirs) - 1; i >= 0; i-- {
		d := c.dirs[i]
		if err := setTimes(d.fd, d.mtime); err != nil && first == nil {
			first = fmt.Errorf("set directory times: %w", err)
		}
		unix.Close(d.fd)
	}
	c.dirs = nil
	c.root.Close()
	return first
}

// isDir reports whether p (a path in the rootfs) resolves to a directory.
func (c *copier) isDir(p string) bool {
	f, err := pathrs.OpenatInRoot(c.root, p)
	if err != nil {
		return false
	}
	defer f.Close()
	var st unix.Stat_t
	return unix.Fstat(int(f.Fd()), &st) == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR
}

// ensureDir creates the directory p (and missing parents, 0755) inside the root and returns an
// O_PATH handle. Directories it creates are owned by chown when given.
func (c *copier) ensureDir(p string, chown *owner) (*os.File, error) {
	// Resolve symlinks first (inside the root, as if it were "/"), so that a symlink to a
	// directory that does not exist yet leads to that directory being made, as Docker does;
	// pathrs then creates and opens the symlink-free path without ever leaving the root.
	resolved, err := securejoin.SecureJoin(c.rootfs, p)
	if err != nil {
		return nil, fmt.Errorf("resolve %s: %w", p, err)
	}
	rel := strings.TrimPrefix(resolved, c.rootfs)
	var missing []string
	if chown != nil {
		for q := resolved; len(q) > len(c.rootfs); q = filepath.Dir(q) {
			if _, err := os.Lstat(q); err == nil {
				break
			}
			missing = append(missing, strings.TrimPrefix(q, c.rootfs))
		}
	}
	h, err := pathrs.MkdirAllHandle(c.root, "/"+strings.TrimPrefix(rel, "/"), 0o755)
	if err != nil {
		return nil, fmt.Errorf("create directory %s: %w", p, err)
	}
	for _, m := range missing {
		f, err := pathrs.OpenatInRoot(c.root, m)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("chown %s: %w", m, err)
		}
		err = unix.Fchownat(int(f.Fd()), "", chown.uid, chown.gid, unix.AT_EMPTY_PATH|unix.AT_SYMLINK_NOFOLLOW)
		f.Close()
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("chown %s: %w", m, err)
		}
	}
	return h, nil
}

// copy copies srcs of tree to dest (absolute, in the rootfs). destDir says dest names a directory
// (a trailing slash, several sources or a wildcard); a dest that is a directory in the rootfs is one.
func (c *copier) copy(tree *srcTree, srcs []source, dest string, destDir bool, o copyOptions) error {
	if !destDir && c.isDir(dest) {
		destDir = true
	}
	for _, s := range srcs {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		switch {
		case s.fi.IsDir():
			if err := c.copyDir(tree, s, dest, o); err != nil {
				return err
			}
		case o.unpack && s.fi.Mode().IsRegular() && isArchive(s.host):
			if err := c.extract(s, dest); err != nil {
				return err
			}
		default:
			target := dest
			if destDir {
				target = path.Join(dest, path.Base("/"+s.rel))
			}
			parent, base := path.Split(target)
			if base == "" {
				return fmt.Errorf("copy %s: destination %s names no file", s.rel, dest)
			}
			pd, err := c.ensureDir(parent, o.chown)
			if err != nil {
				return err
			}
			err = c.entry(int(pd.Fd()), base, s.host, s.fi, tree.keepOwners, o)
			pd.Close()
			if err != nil {
				return fmt.Errorf("copy %s to %s: %w", s.rel, target, err)
			}
		}
	}
	return nil
}

// copyDir copies the contents of the directory s into dest.
func (c *copier) copyDir(tree *srcTree, s source, dest string, o copyOptions) error {
	top, err := c.ensureDir(dest, o.chown)
	if err != nil {
		return err
	}
	fds := map[string]int{".": int(top.Fd())}
	defer func() {
		for k, fd := range fds {
			if k != "." {
				unix.Close(fd)
			}
		}
		top.Close()
	}()
	return tree.walk(s, func(rel, host string, fi os.FileInfo) error {
		if rel == "" {
			return nil
		}
		if err := c.ctx.Err(); err != nil {
			return err
		}
		pfd, ok := fds[path.Dir(rel)]
		if !ok {
			// The parent was left out (.dockerignore) but an exception brings this entry back.
			h, err := c.ensureDir(path.Join(dest, path.Dir(rel)), o.chown)
			if err != nil {
				return err
			}
			if pfd, err = unix.Dup(int(h.Fd())); err != nil {
				h.Close()
				return fmt.Errorf("copy %s: %w", path.Join(s.rel, rel), err)
			}
			h.Close()
			fds[path.Dir(rel)] = pfd
		}
		base := path.Base(rel)
		if err := c.entry(pfd, base, host, fi, tree.keepOwners, o); err != nil {
			return fmt.Errorf("copy %s to %s: %w", path.Join(s.rel, rel), path.Join(dest, rel), err)
		}
		if !fi.IsDir() {
			return nil
		}
		fd, err := unix.Openat(pfd, base, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil && (errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) {
			// The image has a symlink there (say lib -> usr/lib): follow it inside the root.
			var h *os.File
			if h, err = c.ensureDir(path.Join(dest, rel), o.chown); err == nil {
				fd, err = unix.Dup(int(h.Fd()))
				h.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("copy %s: open %s: %w", path.Join(s.rel, rel), path.Join(dest, rel), err)
		}
		fds[rel] = fd
		return nil
	})
}

// entry makes name in the directory pfd a copy of the host file: a directory (kept when present),
// regular file, symlink or device, with owner, mode and times.
func (c *copier) entry(pfd int, name, host string, fi os.FileInfo, keepOwners bool, o copyOptions) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		var s syscall.Stat_t
		if err := syscall.Lstat(host, &s); err != nil {
			return err
		}
		st = &s
	}
	own := owner{}
	switch {
	case o.chown != nil:
		own = *o.chown
	case keepOwners:
		own = owner{int(st.Uid), int(st.Gid)}
	}
	mode := st.Mode & 0o7777
	if o.chmod != nil {
		mode = *o.chmod
	}
	mtime := fi.ModTime()
	var existing unix.Stat_t
	exists := unix.Fstatat(pfd, name, &existing, unix.AT_SYMLINK_NOFOLLOW) == nil
	isDir := st.Mode&unix.S_IFMT == unix.S_IFDIR
	if exists && isDir && existing.Mode&unix.S_IFMT == unix.S_IFLNK {
		// A directory lands where the image has a symlink (lib -> usr/lib): the copy follows it,
		// inside the root (copyDir resolves it), rather than replacing it.
		return nil
	}
	if exists && existing.Mode&unix.S_IFMT == unix.S_IFDIR {
		if !isDir {
			return fmt.Errorf("cannot replace the directory %s with a non-directory", name)
		}
	} else if exists {
		if err := unix.Unlinkat(pfd, name, 0); err != nil {
			return fmt.Errorf("replace %s: %w", name, err)
		}
		exists = false
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if !exists {
			if err := unix.Mkdirat(pfd, name, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		}
		fd, err := unix.Openat(pfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			if exists && (errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP)) {
				return nil
			}
			return fmt.Errorf("open: %w", err)
		}
		if err := unix.Fchown(fd, own.uid, own.gid); err != nil {
			unix.Close(fd)
			return fmt.Errorf("chown: %w", err)
		}
		if err := unix.Fchmod(fd, mode); err != nil {
			unix.Close(fd)
			return fmt.Errorf("chmod: %w", err)
		}
		c.dirs = append(c.dirs, dirTime{fd: fd, mtime: mtime})
		return nil
	case unix.S_IFREG:
		return c.regular(pfd, name, host, own, mode, mtime, keepOwners)
	case unix.S_IFLNK:
		target, err := os.Readlink(host)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, pfd, name); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
		if err := unix.Fchownat(pfd, name, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO:
		if err := unix.Mknodat(pfd, name, st.Mode&unix.S_IFMT|mode, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
		if err := unix.Fchownat(pfd, name, own.uid, own.gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	default:
		return fmt.Errorf("%s: a socket cannot be copied", name)
	}
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(pfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

func (c *copier) regular(pfd int, name, host string, own owner, mode uint32, mtime time.Time, xattrs bool) error {
	in, err := os.Open(host)
	if err != nil {
		return err
	}
	defer in.Close()
	fd, err := unix.Openat(pfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	out := os.NewFile(uintptr(fd), name)
	defer out.Close()
	if _, err := io.Copy(out, in); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if err := out.Chown(own.uid, own.gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// After chown, which clears setuid bits.
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if xattrs {
		// Files from an image keep their file capabilities and other xattrs.
		if xs, _, err := readXattrs(host); err == nil {
			for k, v := range xs {
				if err := unix.Fsetxattr(fd, k, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
					return fmt.Errorf("xattr %s: %w", k, err)
				}
			}
		}
	}
	if err := setTimes(fd, mtime); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// writeFile creates the file dest (absolute, in the rootfs) with data: COPY heredocs and ADD URLs.
func (c *copier) writeFile(dest string, r io.Reader, mode uint32, mtime time.Time, o copyOptions) error {
	parent, base := path.Split(dest)
	if base == "" {
		return fmt.Errorf("destination %s names no file", dest)
	}
	pd, err := c.ensureDir(parent, o.chown)
	if err != nil {
		return err
	}
	defer pd.Close()
	pfd := int(pd.Fd())
	var st unix.Stat_t
	if unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW) == nil {
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			return fmt.Errorf("%s is a directory", dest)
		}
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return fmt.Errorf("replace %s: %w", dest, err)
		}
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", dest, err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	if _, err := io.Copy(f, r); err != nil {
		return fmt.Errorf("write %s: %w", dest, err)
	}
	own := owner{}
	if o.chown != nil {
		own = *o.chown
	}
	if o.chmod != nil {
		mode = *o.chmod
	}
	if err := f.Chown(own.uid, own.gid); err != nil {
		return fmt.Errorf("chown %s: %w", dest, err)
	}
	if err := unix.Fchmod(fd, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", dest, err)
	}
	if !mtime.IsZero() {
		if err := setTimes(fd, mtime); err != nil {
			return fmt.Errorf("set times %s: %w", dest, err)
		}
	}
	return nil
}

// extract unpacks the local archive s into the directory dest (ADD), through the secure unpacker:
// its entries cannot leave dest.
func (c *copier) extract(s source, dest string) error {
	d, err := c.ensureDir(dest, nil)
	if err != nil {
		return err
	}
	defer d.Close()
	f, err := os.Open(s.host)
	if err != nil {
		return err
	}
	defer f.Close()
	br := bufio.NewReader(f)
	var r io.Reader = br
	if head, _ := br.Peek(3); bytes.Equal(head, []byte("BZh")) {
		r = bzip2.NewReader(br)
	}
	root := "/proc/self/fd/" + strconv.Itoa(int(d.Fd()))
	if err := unpack.Apply(c.ctx, root, r, unpack.Options{}); err != nil {
		return fmt.Errorf("ADD %s: extract into %s: %w", s.rel, dest, err)
	}
	return nil
}

// isArchive reports whether the file is a tar archive, plain or compressed with a format ADD
// extracts (gzip, bzip2, zstd).
func isArchive(host string) bool {
	f, err := os.Open(host)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 512)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}), bytes.HasPrefix(head, []byte("BZh")),
		bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return true
	case n >= 262 && string(head[257:262]) == "ustar":
		return true
	}
	return false
}

// timeOf converts a stat time.
func timeOf(ts unix.Timespec) time.Time { return time.Unix(ts.Sec, ts.Nsec) }

// setTimes sets the access and modification times of the open file fd.
func setTimes(fd int, t time.Time) error {
	ts := unix.NsecToTimespec(t.UnixNano())
	return unix.UtimesNano("/proc/self/fd/"+strconv.Itoa(fd), []unix.Timespec{ts, ts})
}
