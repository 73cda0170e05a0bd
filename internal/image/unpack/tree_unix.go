//go:build linux || freebsd

package unpack

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// maxLinks bounds symlink expansions in one lookup, as the kernel's MAXSYMLINKS.
const maxLinks = 40

// tree is a root directory held open by fd. Lookups walk one component at a time with
// O_NOFOLLOW from that fd; ".." is handled on our own stack (never by the kernel) and symlinks
// are expanded by us as if the root were "/", so no lookup can leave the root.
type tree struct {
	root  int
	cache map[string]cached // parent dirs by unresolved name; cleared whenever anything is removed
	stale []int             // flushed fds, closed by reap once the entry using them is done
}

type cached struct {
	fd       int
	resolved string
}

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open root %s: %w", dir, err)
	}
	return &tree{root: fd, cache: map[string]cached{}}, nil
}

func (t *tree) close() {
	t.flush()
	t.reap()
	unix.Close(t.root)
}

// flush drops cached lookups: a removal may have changed what a name resolves to. The fds stay
// open until reap, as the current entry may still be using one.
func (t *tree) flush() {
	for _, c := range t.cache {
		t.stale = append(t.stale, c.fd)
	}
	clear(t.cache)
}

func (t *tree) reap() {
	for _, fd := range t.stale {
		unix.Close(fd)
	}
	t.stale = t.stale[:0]
}

// cleanName turns a tar entry name into a relative slash path ("" for the root itself),
// refusing absolute names and ".." components rather than guessing what was meant.
func cleanName(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("entry with an empty name: %w", ErrUnsafePath)
	}
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("entry %q: absolute name: %w", name, ErrUnsafePath)
	}
	var parts []string
	for _, p := range strings.Split(name, "/") {
		switch p {
		case "", ".":
		case "..":
			return "", fmt.Errorf("entry %q: \"..\" component: %w", name, ErrUnsafePath)
		default:
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, "/"), nil
}

// splitName splits a cleaned name into its parent and last component.
func splitName(name string) (dir, base string) {
	if i := strings.LastIndexByte(name, '/'); i >= 0 {
		return name[:i], name[i+1:]
	}
	return "", name
}

func joinName(dir, base string) string {
	if dir == "" {
		return base
	}
	return dir + "/" + base
}

// walkMode says what a lookup does with missing directories and symlinks.
type walkMode int

const (
	walkFollow   walkMode = iota // expand symlinks inside the root; missing dirs are an error
	walkCreate                   // as walkFollow, creating missing directories 0755
	walkNoFollow                 // refuse any symlink on the way (hardlink targets)
)

// errCrossesSymlink is returned by walkNoFollow lookups.
var errCrossesSymlink = fmt.Errorf("path crosses a symlink: %w", ErrUnsafePath)

// openDir opens the directory p (a cleaned name) below the root and returns an fd the caller
// owns and the symlink-free path it resolved to.
func (t *tree) openDir(p string, mode walkMode) (int, string, error) {
	type frame struct {
		fd   int
		name string
	}
	stack := []frame{{fd: t.root}}
	release := func() {
		for _, f := range stack[1:] {
			unix.Close(f.fd)
		}
	}
	var comps []string
	if p != "" {
		comps = strings.Split(p, "/")
	}
	links := 0
	for len(comps) > 0 {
		c := comps[0]
		comps = comps[1:]
		switch c {
		case "", ".":
			continue
		case "..":
			if len(stack) > 1 {
				unix.Close(stack[len(stack)-1].fd)
				stack = stack[:len(stack)-1]
			}
			continue
		}
		cur := stack[len(stack)-1].fd
		fd, err := unix.Openat(cur, c, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|dirOpenFlags, 0)
		if errors.Is(err, unix.ENOENT) && mode == walkCreate {
			if err = unix.Mkdirat(cur, c, 0o755); err == nil || errors.Is(err, unix.EEXIST) {
				fd, err = unix.Openat(cur, c, unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC|dirOpenFlags, 0)
			}
		}
		if err == nil {
			stack = append(stack, frame{fd: fd, name: c})
			continue
		}
		if !isNotDirOrLink(err) {
			release()
			return -1, "", fmt.Errorf("open %s: %w", p, err)
		}
		target, lerr := readlinkat(cur, c)
		if lerr != nil {
			release()
			return -1, "", fmt.Errorf("open %s: %w", p, unix.ENOTDIR)
		}
		if mode == walkNoFollow {
			release()
			return -1, "", fmt.Errorf("open %s: %w", p, errCrossesSymlink)
		}
		if links++; links > maxLinks {
			release()
			return -1, "", fmt.Errorf("open %s: %w", p, unix.ELOOP)
		}
		if strings.HasPrefix(target, "/") {
			release()
			stack = stack[:1]
		}
		comps = append(strings.Split(target, "/"), comps...)
	}
	names := make([]string, 0, len(stack)-1)
	for _, f := range stack[1:] {
		names = append(names, f.name)
	}
	if len(stack) == 1 {
		top, err := unix.FcntlInt(uintptr(t.root), unix.F_DUPFD_CLOEXEC, 0)
		if err != nil {
			return -1, "", fmt.Errorf("dup root: %w", err)
		}
		return top, "", nil
	}
	top := stack[len(stack)-1].fd
	for _, f := range stack[1 : len(stack)-1] {
		unix.Close(f.fd)
	}
	return top, strings.Join(names, "/"), nil
}

// parent returns a cached fd (owned by the tree, valid until the next flush) for dir.
func (t *tree) parent(dir string, mode walkMode) (int, string, error) {
	if c, ok := t.cache[dir]; ok {
		return c.fd, c.resolved, nil
	}
	fd, resolved, err := t.openDir(dir, mode)
	if err != nil {
		return -1, "", err
	}
	if len(t.cache) >= 64 {
		t.flush()
	}
	t.cache[dir] = cached{fd: fd, resolved: resolved}
	return fd, resolved, nil
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; size <= 1<<16; size *= 4 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
	return "", unix.ENAMETOOLONG
}

// lstatAt stats name in dirfd without following a final symlink.
func lstatAt(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW)
	return st, err
}

// removeAt removes name (recursively for a directory) from dirfd, without following symlinks.
func (t *tree) removeAt(dirfd int, name string) error {
	if _, err := lstatAt(dirfd, name); errors.Is(err, unix.ENOENT) {
		return nil // nothing there: cached lookups stay valid
	}
	t.flush()
	return removeAll(dirfd, name)
}

func removeAll(dirfd int, name string) error {
	st, err := lstatAt(dirfd, name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unlink %s: %w", name, err)
		}
		return nil
	}
	if err := eachChild(dirfd, name, func(fd int, child string) error {
		return removeAll(fd, child)
	}); err != nil {
		return err
	}
	if err := unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("rmdir %s: %w", name, err)
	}
	return nil
}

// eachChild calls fn for every entry of the directory name in dirfd (opened without following
// a symlink), passing the directory's fd.
func eachChild(dirfd int, name string, fn func(fd int, child string) error) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", name, err)
	}
	d := os.NewFile(uintptr(fd), name)
	defer d.Close()
	// Read every name first: removing entries while reading the directory may skip some.
	names, err := d.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read dir %s: %w", name, err)
	}
	for _, n := range names {
		if err := fn(fd, n); err != nil {
			return fmt.Errorf("%s: %w", path.Join(name, n), err)
		}
	}
	return nil
}
