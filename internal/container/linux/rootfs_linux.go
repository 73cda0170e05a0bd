package linux

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// RootfsOptions carries the runtime choices that shape the root filesystem beyond the spec.
type RootfsOptions struct {
	NoPivot  bool // --no-pivot: MS_MOVE + chroot instead of pivot_root
	UserNS   bool // in a new user namespace: devices are bind-mounted from the host instead of mknod
	Terminal bool // a /dev/console will be bound later (SetupConsoleMount)
	// HostMountNS: the config asks for no mount namespace, so mounts are made in the host's and the
	// root is entered with chroot (runc's behaviour).
	HostMountNS bool
	// IDMapTrees are the fds of ID-mapped bind mounts the parent made (IDMapTrees), by mount index.
	IDMapTrees map[int]int
}

// rootfsMounter performs the spec mounts below one rootfs, held open as root so that every target
// is resolved inside it.
type rootfsMounter struct {
	root *os.File // O_PATH handle of the rootfs
	spec *specs.Spec
	opts RootfsOptions
	cur  int // index in spec.Mounts of the mount being made
}

// PrepareRootfs builds the container's filesystem under rootfs before pivot_root. Preconditions: the
// caller is in its own mount namespace and holds CAP_SYS_ADMIN there; rootfs is an absolute host path.
func PrepareRootfs(s *specs.Spec, rootfs string, o RootfsOptions) error {
	if s == nil {
		return errors.New("prepare rootfs: nil spec")
	}
	rootfs, err := filepath.Abs(rootfs)
	if err != nil {
		return fmt.Errorf("rootfs %s: %w", rootfs, err)
	}
	// Without a mount namespace of its own the container's mounts live in the host's (as with runc):
	// the host's propagation must not be touched, and delete unmounts what is left under the rootfs.
	if !o.HostMountNS {
		if err := rootfsInitialPropagation(s); err != nil {
			return err
		}
		if err := rootfsParentPrivate(rootfs); err != nil {
			return err
		}
	}
	// A bind of the rootfs onto itself makes it a mount point, which pivot_root and MS_MOVE need.
	if err := unix.Mount(rootfs, rootfs, "bind", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("bind rootfs %s: %w", rootfs, err)
	}
	root, err := os.OpenFile(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer root.Close()
	r := &rootfsMounter{root: root, spec: s, opts: o}
	for i, m := range s.Mounts {
		r.cur = i
		if err := r.mount(m); err != nil {
			return fmt.Errorf("mount %q on %q (mounts[%d]): %w", m.Source, m.Destination, i, err)
		}
	}
	if rootfsDevIsBind(s) {
		// The host's /dev (or a prepared one) is used as is: never create or replace nodes in it.
		return nil
	}
	return devSetup(root, s, o)
}

// rootfsInitialPropagation makes "/" rslave (runc's default) or linux.rootfsPropagation, so that the
// mounts made for the container do not propagate back to the host.
func rootfsInitialPropagation(s *specs.Spec) error {
	flag := unix.MS_SLAVE | unix.MS_REC
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		p, ok := mountPropagationTable[s.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("linux.rootfsPropagation: unknown value %q", s.Linux.RootfsPropagation)
		}
		flag = int(p)
	}
	if err := unix.Mount("", "/", "", uintptr(flag), ""); err != nil {
		return fmt.Errorf("set propagation of /: %w", err)
	}
	return nil
}

// rootfsParentPrivate makes the mount holding rootfs private when it is shared: pivot_root and
// MS_MOVE refuse a shared parent, and the rootfs bind must not propagate to the host.
func rootfsParentPrivate(rootfs string) error {
	mounts, err := mountinfo.GetMounts(mountinfo.ParentsFilter(rootfs))
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	var parent *mountinfo.Info
	for _, m := range mounts {
		if parent == nil || len(m.Mountpoint) > len(parent.Mountpoint) {
			parent = m
		}
	}
	// An unbindable parent (rootfsPropagation "runbindable") refuses the rootfs bind with EINVAL.
	if parent == nil || !(strings.Contains(parent.Optional, "shared:") || strings.Contains(parent.Optional, "unbindable")) {
		return nil
	}
	if err := unix.Mount("", parent.Mountpoint, "", unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make %s private: %w", parent.Mountpoint, err)
	}
	return nil
}

// mountProcPath names an open file by its /proc/thread-self/fd magic link: mount(2) on it acts on
// exactly the file the handle was opened on, whatever has been swapped into the rootfs since.
func mountProcPath(f *os.File) string {
	return "/proc/thread-self/fd/" + strconv.Itoa(int(f.Fd()))
}

func (r *rootfsMounter) mount(m specs.Mount) error {
	o := ParseMountOptions(m.Options)
	switch {
	case o.Bind():
		return r.bind(m, o)
	case m.Type == "cgroup":
		return r.cgroup(m, o)
	default:
		return r.filesystem(m, o)
	}
}

// target creates (if missing) and opens the mount target inside the rootfs: a directory, or an empty
// file when a file is bind-mounted. Symlinks are resolved as if the rootfs were "/".
func (r *rootfsMounter) target(dest string, dir bool) (*os.File, error) {
	dest = filepath.Clean("/" + dest)
	if dir || dest == "/" {
		f, err := mkdirAllInRoot(r.root, dest, 0o755)
		if err != nil {
			return nil, fmt.Errorf("create target directory: %w", err)
		}
		return f, nil
	}
	parent, err := mkdirAllInRoot(r.root, filepath.Dir(dest), 0o755)
	if err != nil {
		return nil, fmt.Errorf("create target parent: %w", err)
	}
	defer parent.Close()
	err = unix.Mknodat(int(parent.Fd()), filepath.Base(dest), unix.S_IFREG|0o644, 0)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("create target file: %w", err)
	}
	return r.open(dest)
}

// open resolves dest inside the rootfs again: after a mount, this yields the new mount's root.
func (r *rootfsMounter) open(dest string) (*os.File, error) {
	f, err := openInRoot(r.root, dest)
	if err != nil {
		return nil, fmt.Errorf("open target: %w", err)
	}
	return f, nil
}

func (r *rootfsMounter) bind(m specs.Mount, o MountOptions) error {
	fi, err := os.Stat(m.Source)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	target, err := r.target(m.Destination, fi.IsDir())
	if err != nil {
		return err
	}
	defer target.Close()
	if idmapWanted(m, o) {
		err = r.idmapBind(m, o, target)
	} else {
		err = unix.Mount(m.Source, mountProcPath(target), "bind", unix.MS_BIND|(o.Flags&unix.MS_REC), "")
	}
	if err != nil {
		return err
	}
	mnt, err := r.open(m.Destination)
	if err != nil {
		return err
	}
	defer mnt.Close()
	if mountNeedsRemount(o) {
		if err := mountRemountBind(mnt, o); err != nil {
			return err
		}
	}
	return mountApply(mnt, o)
}

// mountRemountBind applies per-mount flags (ro, nosuid, ...) to a bind mount. If the kernel refuses
// (EPERM: flags locked by a more privileged mount namespace), it retries keeping the source's flags.
func mountRemountBind(mnt *os.File, o MountOptions) error {
	err := unix.Mount("", mountProcPath(mnt), "", mountRemountFlags(o, 0), "")
	if errors.Is(err, unix.EPERM) {
		var st unix.Statfs_t
		if err := unix.Fstatfs(int(mnt.Fd()), &st); err != nil {
			return fmt.Errorf("statfs: %w", err)
		}
		err = unix.Mount("", mountProcPath(mnt), "", mountRemountFlags(o, mountLockedFlags(uint64(st.Flags))), "")
	}
	if err != nil {
		return fmt.Errorf("remount bind with %#x: %w", mountRemountFlags(o, 0), err)
	}
	return nil
}

// mountApply sets the recursive attributes (rro, rnosuid, ...) and then the propagation options,
// each as its own call as mount(2) wants.
func mountApply(mnt *os.File, o MountOptions) error {
	if o.AttrSet != 0 || o.AttrClr != 0 {
		attr := unix.MountAttr{Attr_set: o.AttrSet, Attr_clr: o.AttrClr}
		if err := unix.MountSetattr(int(mnt.Fd()), "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
			return fmt.Errorf("mount_setattr (recursive options): %w", err)
		}
	}
	for _, p := range o.Propagation {
		if err := unix.Mount("", mountProcPath(mnt), "", p, ""); err != nil {
			return fmt.Errorf("set propagation %#x: %w", p, err)
		}
	}
	return nil
}

// mountFallbackSource names the host tree that runc binds instead when a user namespace may not
// mount the filesystem itself (sysfs without a network namespace, mqueue without an IPC namespace).
var mountFallbackSource = map[string]string{"sysfs": "/sys", "mqueue": "/dev/mqueue"}

func (r *rootfsMounter) filesystem(m specs.Mount, o MountOptions) error {
	target, err := r.target(m.Destination, true)
	if err != nil {
		return err
	}
	defer target.Close()
	flags := o.Flags
	// Devices are created under /dev after the mounts and tmpcopyup writes into the new tmpfs: mount
	// read-write now, read-only afterwards (FinishRootfs for /dev).
	deferRO := filepath.Clean("/"+m.Destination) == "/dev" || o.CopyUp
	if deferRO {
		flags &^= unix.MS_RDONLY
	}
	err = unix.Mount(m.Source, mountProcPath(target), m.Type, flags, o.Data)
	if fb, ok := mountFallbackSource[m.Type]; ok && r.opts.UserNS && errors.Is(err, unix.EPERM) {
		return r.fallbackBind(m, o, fb)
	}
	if err != nil {
		return err
	}
	mnt, err := r.open(m.Destination)
	if err != nil {
		return err
	}
	defer mnt.Close()
	if o.CopyUp {
		if err := mountCopyUp(target, mnt); err != nil {
			return err
		}
		if o.Flags&unix.MS_RDONLY != 0 {
			if err := unix.Mount("", mountProcPath(mnt), "", o.Flags|unix.MS_REMOUNT, o.Data); err != nil {
				return fmt.Errorf("remount read-only: %w", err)
			}
		}
	}
	if idmapWanted(m, o) {
		if mnt, err = r.idmapInPlace(m, o, target, mnt); err != nil {
			return err
		}
		defer mnt.Close()
	}
	return mountApply(mnt, o)
}

// fallbackBind replaces a filesystem the user namespace may not mount by an rbind of the host's.
func (r *rootfsMounter) fallbackBind(m specs.Mount, o MountOptions, source string) error {
	bm := m
	bm.Source = source
	bo := o
	bo.Flags |= unix.MS_BIND | unix.MS_REC
	return r.bind(bm, bo)
}

// PivotRoot makes rootfs the root: pivot_root(".", ".") stacks the old root on top of the new one,
// which is then made rslave (so its unmount does not reach the host) and lazily unmounted.
func PivotRoot(rootfs string, noPivot bool) error {
	return EnterRoot(rootfs, RootfsOptions{NoPivot: noPivot})
}

// EnterRoot makes rootfs the process's root: pivot_root, or MS_MOVE + chroot with NoPivot, or a plain
// chroot without a mount namespace of the container's own.
func EnterRoot(rootfs string, o RootfsOptions) error {
	if o.HostMountNS {
		if err := unix.Chroot(rootfs); err != nil {
			return fmt.Errorf("chroot %s: %w", rootfs, err)
		}
		return unix.Chdir("/")
	}
	noPivot := o.NoPivot
	if noPivot {
		return rootfsMoveRoot(rootfs)
	}
	oldroot, err := unix.Open("/", unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open old root: %w", err)
	}
	defer unix.Close(oldroot)
	newroot, err := unix.Open(rootfs, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(newroot)
	if err := unix.Fchdir(newroot); err != nil {
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", rootfs, err)
	}
	if err := unix.Fchdir(oldroot); err != nil {
		return fmt.Errorf("chdir old root: %w", err)
	}
	if err := unix.Mount("", ".", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("make old root rslave: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("unmount old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// rootfsMoveRoot is --no-pivot: detach what is outside the rootfs (so no host mount stays reachable
// in this namespace), move the rootfs onto "/" and chroot into it.
func rootfsMoveRoot(rootfs string) error {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return fmt.Errorf("read mountinfo: %w", err)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		mp := mounts[i].Mountpoint
		inside := mp == rootfs || strings.HasPrefix(mp, rootfs+"/")
		ancestor := mp == "/" || strings.HasPrefix(rootfs, mp+"/")
		if !inside && !ancestor {
			// Best effort: a mount locked by a parent user namespace stays, hidden under the new root.
			_ = unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	if err := unix.Chdir(rootfs); err != nil {
		return fmt.Errorf("chdir rootfs: %w", err)
	}
	if err := unix.Mount(rootfs, "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move rootfs to /: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return fmt.Errorf("chdir /: %w", err)
	}
	return nil
}

// FinishRootfs runs after PivotRoot: read-only and masked paths, a read-only /dev if asked, a
// read-only root, and the final root propagation. It uses only fd-based mount calls, so it does not
// depend on the container's /proc.
func FinishRootfs(s *specs.Spec) error {
	if s == nil {
		return errors.New("finish rootfs: nil spec")
	}
	if s.Linux != nil {
		for i, p := range s.Linux.ReadonlyPaths {
			if err := rootfsReadonlyPath(p); err != nil {
				return fmt.Errorf("linux.readonlyPaths[%d] %q: %w", i, p, err)
			}
		}
		if err := rootfsMaskPaths(s.Linux.MaskedPaths); err != nil {
			return err
		}
	}
	if err := rootfsDevReadonly(s); err != nil {
		return err
	}
	if s.Root != nil && s.Root.Readonly {
		if err := unix.MountSetattr(unix.AT_FDCWD, "/", 0, &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}); err != nil {
			return fmt.Errorf("root.readonly: remount / read-only: %w", err)
		}
	}
	if s.Linux != nil && s.Linux.RootfsPropagation != "" {
		p, ok := mountPropagationTable[s.Linux.RootfsPropagation]
		if !ok {
			return fmt.Errorf("linux.rootfsPropagation: unknown value %q", s.Linux.RootfsPropagation)
		}
		if err := unix.Mount("", "/", "", p, ""); err != nil {
			return fmt.Errorf("linux.rootfsPropagation %s: %w", s.Linux.RootfsPropagation, err)
		}
	}
	return nil
}

// rootfsOpen opens p inside the (already pivoted) root; ok is false when it does not exist.
func rootfsOpen(p string) (f *os.File, ok bool, err error) {
	f, err = openInRootPath("/", p)
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOTDIR) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return f, true, nil
}

// rootfsReadonlyPath replaces p by a recursive clone of itself made read-only; the clone keeps every
// other flag (nosuid, nodev, noexec, atime) of the mounts it copies.
func rootfsReadonlyPath(p string) error {
	f, ok, err := rootfsOpen(p)
	if err != nil || !ok {
		return err
	}
	defer f.Close()
	tree, err := unix.OpenTree(int(f.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone mount: %w", err)
	}
	defer unix.Close(tree)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, &attr); err != nil {
		return fmt.Errorf("make read-only: %w", err)
	}
	return mountMoveOnto(tree, f)
}

// mountMoveOnto attaches the detached mount tree onto the file behind the handle target.
func mountMoveOnto(tree int, target *os.File) error {
	err := unix.MoveMount(tree, "", int(target.Fd()), "", unix.MOVE_MOUNT_F_EMPTY_PATH|unix.MOVE_MOUNT_T_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// rootfsMaskPaths hides each path: directories under an empty read-only tmpfs, files under /dev/null.
// /dev/null is checked to be the real 1:3 character device first (CVE-2025-31133: a container that
// replaced it by a symlink could otherwise get any host file bound over a masked path).
func rootfsMaskPaths(paths []string) error {
	var null *os.File
	defer func() {
		if null != nil {
			null.Close()
		}
	}()
	for i, p := range paths {
		f, ok, err := rootfsOpen(p)
		if err == nil && ok {
			if null == nil {
				null, err = devOpenNull()
			}
			if err == nil {
				err = rootfsMaskOne(f, null)
			}
			f.Close()
		}
		if err != nil {
			return fmt.Errorf("linux.maskedPaths[%d] %q: %w", i, p, err)
		}
	}
	return nil
}

func rootfsMaskOne(f, null *os.File) error {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return mountEmptyTmpfs(f)
	}
	tree, err := unix.OpenTree(int(null.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone /dev/null: %w", err)
	}
	defer unix.Close(tree)
	return mountMoveOnto(tree, f)
}

// mountEmptyTmpfs covers the directory behind target with an empty read-only tmpfs.
func mountEmptyTmpfs(target *os.File) error {
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fs)
	if err := unix.FsconfigCreate(fs); err != nil {
		return fmt.Errorf("create tmpfs: %w", err)
	}
	attrs := unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID | unix.MOUNT_ATTR_NODEV | unix.MOUNT_ATTR_NOEXEC
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount tmpfs: %w", err)
	}
	defer unix.Close(mnt)
	return mountMoveOnto(mnt, target)
}

// SetupConsoleMount binds the pty slave onto /dev/console (created as an empty file if missing).
// It runs after PivotRoot, with slavePath naming the slave inside the container.
func SetupConsoleMount(slavePath string) error {
	slave, err := openInRootPath("/", slavePath)
	if err != nil {
		return fmt.Errorf("open console %s: %w", slavePath, err)
	}
	defer slave.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(slave.Fd()), &st); err != nil {
		return fmt.Errorf("stat console %s: %w", slavePath, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFCHR {
		return fmt.Errorf("console %s: not a character device", slavePath)
	}
	target, err := devCreateFile("/", "/dev/console")
	if err != nil {
		return fmt.Errorf("create /dev/console: %w", err)
	}
	defer target.Close()
	tree, err := unix.OpenTree(int(slave.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH)
	if err != nil {
		return fmt.Errorf("clone console %s: %w", slavePath, err)
	}
	defer unix.Close(tree)
	if err := mountMoveOnto(tree, target); err != nil {
		return fmt.Errorf("bind console onto /dev/console: %w", err)
	}
	return nil
}

// cgroup mounts the container's view of the cgroup hierarchies. With a unified host that is cgroup2
// itself. On a v1 or hybrid host it is a tmpfs holding one entry per hierarchy: the filesystem itself
// when the container has a cgroup namespace (the kernel roots it at the namespace), else a bind of
// the process's own cgroup directory, as runc does.
func (r *rootfsMounter) cgroup(m specs.Mount, o MountOptions) error {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return fmt.Errorf("statfs /sys/fs/cgroup: %w", err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return r.cgroup2(m, o)
	}
	hiers, err := rootfsCgroupHierarchies()
	if err != nil {
		return err
	}
	target, err := r.target(m.Destination, true)
	if err != nil {
		return err
	}
	defer target.Close()
	const safe = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC
	flags := (o.Flags | safe) &^ (unix.MS_RDONLY | unix.MS_BIND | unix.MS_REC | unix.MS_REMOUNT)
	if err := unix.Mount("tmpfs", mountProcPath(target), "tmpfs", flags, "mode=755"); err != nil {
		return fmt.Errorf("mount tmpfs for cgroups: %w", err)
	}
	mnt, err := r.open(m.Destination)
	if err != nil {
		return err
	}
	defer mnt.Close()
	for _, h := range hiers {
		if err := r.cgroupHier(mnt, h, flags|(o.Flags&unix.MS_RDONLY)); err != nil {
			return fmt.Errorf("cgroup %s: %w", h.Name, err)
		}
	}
	if o.Flags&unix.MS_RDONLY != 0 {
		if err := unix.Mount("", mountProcPath(mnt), "", flags|unix.MS_RDONLY|unix.MS_REMOUNT, "mode=755"); err != nil {
			return fmt.Errorf("remount cgroup tmpfs read-only: %w", err)
		}
	}
	return mountApply(mnt, o)
}

func rootfsCgroupHierarchies() ([]mountCgroupHier, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter("/sys/fs/cgroup"))
	if err != nil {
		return nil, fmt.Errorf("read mountinfo: %w", err)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return nil, err
	}
	return mountCgroupHierarchies(mounts, string(self), "/sys/fs/cgroup"), nil
}

// cgroupHier shows one hierarchy in the tmpfs mnt, plus a symlink per controller of a joint hierarchy
// ("cpu" -> "cpu,cpuacct").
func (r *rootfsMounter) cgroupHier(mnt *os.File, h mountCgroupHier, flags uintptr) error {
	sub, err := mkdirAllInRoot(mnt, h.Name, 0o755)
	if err != nil {
		return fmt.Errorf("create directory: %w", err)
	}
	defer sub.Close()
	if rootfsHasNamespace(r.spec, specs.CgroupNamespace) {
		data := h.Options
		if h.Type == "cgroup2" {
			data = ""
		}
		if err := unix.Mount("cgroup", mountProcPath(sub), h.Type, flags, data); err != nil {
			return err
		}
	} else {
		if h.Source == "" {
			return errors.New("this process's cgroup is outside the hierarchy's mount (a cgroup namespace the spec does not name?)")
		}
		if err := unix.Mount(h.Source, mountProcPath(sub), "bind", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind %s: %w", h.Source, err)
		}
		bound, err := openInRoot(mnt, h.Name)
		if err != nil {
			return err
		}
		defer bound.Close()
		if err := mountRemountBind(bound, MountOptions{Flags: flags}); err != nil {
			return err
		}
	}
	if !strings.Contains(h.Name, ",") {
		return nil
	}
	for c := range strings.SplitSeq(h.Name, ",") {
		if err := unix.Symlinkat(h.Name, int(mnt.Fd()), c); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("symlink %s: %w", c, err)
		}
	}
	return nil
}

// cgroup2 mounts the unified hierarchy; when the kernel refuses (no cgroup namespace of our own in
// a user namespace), it binds the process's cgroup directory instead, like runc.
func (r *rootfsMounter) cgroup2(m specs.Mount, o MountOptions) error {
	target, err := r.target(m.Destination, true)
	if err != nil {
		return err
	}
	defer target.Close()
	err = unix.Mount("cgroup2", mountProcPath(target), "cgroup2", o.Flags, o.Data)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
		hiers, herr := rootfsCgroupHierarchies()
		for _, h := range hiers {
			if h.Type == "cgroup2" && h.Source != "" && herr == nil {
				return r.fallbackBind(m, o, h.Source)
			}
		}
	}
	if err != nil {
		return err
	}
	mnt, err := r.open(m.Destination)
	if err != nil {
		return err
	}
	defer mnt.Close()
	return mountApply(mnt, o)
}

func rootfsHasNamespace(s *specs.Spec, t specs.LinuxNamespaceType) bool {
	return s.Linux != nil && slices.ContainsFunc(s.Linux.Namespaces, func(n specs.LinuxNamespace) bool { return n.Type == t })
}
