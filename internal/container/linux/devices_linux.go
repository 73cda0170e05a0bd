package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// devDefaults are the nodes every container gets (runc's list) unless linux.devices names the path.
func devDefaults() []specs.LinuxDevice {
	mode := os.FileMode(0o666)
	var zero uint32
	dev := func(p string, major, minor int64) specs.LinuxDevice {
		return specs.LinuxDevice{Path: p, Type: "c", Major: major, Minor: minor, FileMode: &mode, UID: &zero, GID: &zero}
	}
	return []specs.LinuxDevice{
		dev("/dev/null", 1, 3), dev("/dev/zero", 1, 5), dev("/dev/full", 1, 7),
		dev("/dev/random", 1, 8), dev("/dev/urandom", 1, 9), dev("/dev/tty", 5, 0),
	}
}

// devList merges the defaults with linux.devices; a spec device replaces the default of its path.
func devList(s *specs.Spec) []specs.LinuxDevice {
	var own []specs.LinuxDevice
	if s.Linux != nil {
		own = s.Linux.Devices
	}
	var out []specs.LinuxDevice
	for _, d := range devDefaults() {
		if !slices.ContainsFunc(own, func(o specs.LinuxDevice) bool { return filepath.Clean(o.Path) == d.Path }) {
			out = append(out, d)
		}
	}
	return append(out, own...)
}

// devSetup creates the device nodes, the /dev symlinks and, for a terminal, the /dev/console file.
func devSetup(root *os.File, s *specs.Spec, o RootfsOptions) error {
	for i, d := range devList(s) {
		if err := devCreate(root, d, o.UserNS); err != nil {
			return fmt.Errorf("device %s (%d): %w", d.Path, i, err)
		}
	}
	dev, err := mkdirAllInRoot(root, "/dev", 0o755)
	if err != nil {
		return fmt.Errorf("create /dev: %w", err)
	}
	defer dev.Close()
	if err := devSymlinks(int(dev.Fd()), rootfsHasProc(s)); err != nil {
		return err
	}
	if o.Terminal {
		err := unix.Mknodat(int(dev.Fd()), "console", unix.S_IFREG|0o600, 0)
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create /dev/console: %w", err)
		}
	}
	return nil
}

// rootfsHasProc reports whether a proc filesystem is mounted on /proc.
func rootfsHasProc(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if m.Type == "proc" && filepath.Clean("/"+m.Destination) == "/proc" {
			return true
		}
	}
	return false
}

// devSymlinks creates runc's /dev links; ptmx must point into the container's devpts instance.
func devSymlinks(dev int, proc bool) error {
	links := [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"},
		{"/proc/self/fd/1", "stdout"}, {"/proc/self/fd/2", "stderr"},
	}
	if proc {
		links = append(links, [2]string{"/proc/kcore", "core"})
	}
	for _, l := range links {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink /dev/%s: %w", l[1], err)
		}
	}
	if err := unix.Unlinkat(dev, "ptmx", 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove /dev/ptmx: %w", err)
	}
	if err := unix.Symlinkat("pts/ptmx", dev, "ptmx"); err != nil {
		return fmt.Errorf("symlink /dev/ptmx: %w", err)
	}
	return nil
}

// devModeType maps a spec device type to the S_IFMT bits of mknod(2).
func devModeType(t string) (uint32, error) {
	switch t {
	case "c", "u":
		return unix.S_IFCHR, nil
	case "b":
		return unix.S_IFBLK, nil
	case "p":
		return unix.S_IFIFO, nil
	}
	return 0, fmt.Errorf("unknown device type %q", t)
}

// devCreate makes one node inside the rootfs: mknod with the spec's mode and owner, or in a user
// namespace (where mknod is refused) a bind mount of the host's node at the same path.
func devCreate(root *os.File, d specs.LinuxDevice, userns bool) error {
	typ, err := devModeType(d.Type)
	if err != nil {
		return err
	}
	p := filepath.Clean("/" + d.Path)
	if userns {
		target, err := devCreateFileAt(root, p)
		if err != nil {
			return err
		}
		defer target.Close()
		if err := unix.Mount(p, mountProcPath(target), "bind", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind host node: %w", err)
		}
		return nil
	}
	dir, err := mkdirAllInRoot(root, filepath.Dir(p), 0o755)
	if err != nil {
		return fmt.Errorf("create parent: %w", err)
	}
	defer dir.Close()
	perm := uint32(0o666)
	if d.FileMode != nil {
		perm = uint32(*d.FileMode) & 0o7777
	}
	name := filepath.Base(p)
	err = unix.Mknodat(int(dir.Fd()), name, typ|perm, int(unix.Mkdev(uint32(d.Major), uint32(d.Minor))))
	if errors.Is(err, unix.EEXIST) {
		return nil // like runc: a node the image (or a bind) already has is left alone
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	var uid, gid uint32
	if d.UID != nil {
		uid = *d.UID
	}
	if d.GID != nil {
		gid = *d.GID
	}
	if err := unix.Fchownat(int(dir.Fd()), name, int(uid), int(gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	// mknod applied the umask: set the exact mode.
	if err := unix.Fchmodat(int(dir.Fd()), name, perm, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// devCreateFile creates an empty file at p inside the directory tree rooted at root (a path), if
// nothing is there yet, and returns an O_PATH handle to what is at p.
func devCreateFile(root, p string) (*os.File, error) {
	r, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return devCreateFileAt(r, p)
}

func devCreateFileAt(root *os.File, p string) (*os.File, error) {
	p = filepath.Clean("/" + p)
	dir, err := mkdirAllInRoot(root, filepath.Dir(p), 0o755)
	if err != nil {
		return nil, fmt.Errorf("create parent: %w", err)
	}
	defer dir.Close()
	err = unix.Mknodat(int(dir.Fd()), filepath.Base(p), unix.S_IFREG|0o600, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create %s: %w", p, err)
	}
	fd, err := unix.Openat(int(dir.Fd()), filepath.Base(p), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", p, err)
	}
	f := os.NewFile(uintptr(fd), p)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT == unix.S_IFLNK || st.Mode&unix.S_IFMT == unix.S_IFDIR {
		f.Close()
		return nil, fmt.Errorf("%s: not a file to mount over", p)
	}
	return f, nil
}

// devOpenNull opens the container's /dev/null and proves it is the null device (char 1:3).
func devOpenNull() (*os.File, error) {
	f, err := openInRootPath("/", "/dev/null")
	if err != nil {
		return nil, fmt.Errorf("open /dev/null: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		f.Close()
		return nil, fmt.Errorf("stat /dev/null: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		f.Close()
		return nil, errors.New("/dev/null is not the null device (char 1:3)")
	}
	return f, nil
}

// mountCopyUp copies the directory a tmpfs now covers into it (tmpcopyup). under is a handle opened
// before the mount: "." relative to it is still the covered directory, since "." crosses no mount.
func mountCopyUp(under, mnt *os.File) error {
	src, err := unix.Openat(int(under.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("tmpcopyup: open covered directory: %w", err)
	}
	dst, err := unix.Openat(int(mnt.Fd()), ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(src)
		return fmt.Errorf("tmpcopyup: open tmpfs: %w", err)
	}
	defer unix.Close(dst)
	var st unix.Stat_t
	if err := unix.Fstat(src, &st); err != nil {
		unix.Close(src)
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	if err := mountCopyMeta(dst, "", &st); err != nil {
		unix.Close(src)
		return err
	}
	if err := mountCopyDir(src, dst); err != nil {
		return fmt.Errorf("tmpcopyup: %w", err)
	}
	return nil
}

// mountCopyDir copies every entry of the directory src into dst. It takes ownership of src.
func mountCopyDir(src, dst int) error {
	dir := os.NewFile(uintptr(src), "tmpcopyup")
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("read directory: %w", err)
	}
	for _, name := range names {
		if err := mountCopyEntry(src, dst, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func mountCopyEntry(src, dst int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return err
		}
		if err := mountCopySubdir(src, dst, name); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := mountCopyFile(src, dst, name); err != nil {
			return err
		}
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src, name, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
			return err
		}
	default:
		if err := unix.Mknodat(dst, name, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	return mountCopyMeta(dst, name, &st)
}

func mountCopySubdir(src, dst int, name string) error {
	s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Close(s)
		return err
	}
	defer unix.Close(d)
	return mountCopyDir(s, d)
}

func mountCopyFile(src, dst int, name string) error {
	s, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	in := os.NewFile(uintptr(s), name)
	defer in.Close()
	d, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	out := os.NewFile(uintptr(d), name)
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// mountCopyMeta gives dst/name (or dst itself for "") the owner and mode of st.
func mountCopyMeta(dst int, name string, st *unix.Stat_t) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if name == "" {
		flags = unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), flags); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return nil
	}
	if name == "" {
		return unix.Fchmod(dst, st.Mode&0o7777)
	}
	if err := unix.Fchmodat(dst, name, st.Mode&0o7777, 0); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	return nil
}

// rootfsDevIsBind reports whether the spec bind-mounts something onto /dev.
func rootfsDevIsBind(s *specs.Spec) bool {
	for _, m := range s.Mounts {
		if filepath.Clean("/"+m.Destination) == "/dev" && ParseMountOptions(m.Options).Bind() {
			return true
		}
	}
	return false
}

// rootfsDevReadonly makes a /dev filesystem read-only when its mount asked for it: PrepareRootfs
// mounted it writable to create the device nodes.
func rootfsDevReadonly(s *specs.Spec) error {
	for i, m := range s.Mounts {
		o := ParseMountOptions(m.Options)
		if filepath.Clean("/"+m.Destination) != "/dev" || o.Bind() || o.Flags&unix.MS_RDONLY == 0 {
			continue
		}
		attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
		if err := unix.MountSetattr(unix.AT_FDCWD, "/dev", 0, &attr); err != nil {
			return fmt.Errorf("mount %q on %q (mounts[%d]): remount read-only: %w", m.Source, m.Destination, i, err)
		}
	}
	return nil
}
