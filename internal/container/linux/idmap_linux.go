package linux

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ID-mapped mounts: the idmap and ridmap mount options, and a mount's own uidMappings/gidMappings.
//
// mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN in the user namespace that owns the mounted
// filesystem: the host's, for the host directories that ID-mapped binds are for. A container without a
// user namespace has its init make them (idmapBind, idmapInPlace). In a user namespace the init no
// longer holds that capability, so the parent makes the binds before the spawn (IDMapTrees), each a
// detached tree that the init only attaches with move_mount, which needs CAP_SYS_ADMIN in the init's
// own mount namespace alone. runc does the same, also for bind mounts only.

// idmapWanted reports whether m is to be an ID-mapped mount.
func idmapWanted(m specs.Mount, o MountOptions) bool {
	return o.IDMap || len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0
}

// IDMapTrees makes the ID-mapped bind mounts of a container with a user namespace: detached trees keyed
// by their index in s.Mounts, for the init to attach (RootfsOptions.IDMapTrees). It returns nothing for
// a container without a user namespace, whose init makes its own. The caller closes the trees; a
// detached tree vanishes with its last fd.
func IDMapTrees(s *specs.Spec) (trees map[int]*os.File, err error) {
	if !rootfsHasNamespace(s, specs.UserNamespace) {
		return nil, nil
	}
	defer func() {
		if err != nil {
			CloseIDMapTrees(trees)
			trees = nil
		}
	}()
	// One user namespace per distinct mapping or joined path: usually one, shared by every mount.
	userns := map[string]*os.File{}
	defer func() {
		for _, ns := range userns {
			ns.Close()
		}
	}()
	for i, m := range s.Mounts {
		o := ParseMountOptions(m.Options)
		if !idmapWanted(m, o) {
			continue
		}
		where := fmt.Sprintf("mounts[%d] (%s)", i, m.Destination)
		if !o.Bind() {
			return trees, fmt.Errorf("%s: an ID-mapped mount in a container with a user namespace must be a bind mount", where)
		}
		ns, err := idmapTreeUserns(s, m, userns)
		if err != nil {
			return trees, fmt.Errorf("%s: %w", where, err)
		}
		tree, err := idmapClone(m.Source, o, ns)
		if err != nil {
			return trees, fmt.Errorf("%s: %w", where, err)
		}
		if trees == nil {
			trees = map[int]*os.File{}
		}
		trees[i] = tree
	}
	return trees, nil
}

// idmapTreeUserns returns the user namespace that ID-maps m, cached by mapping or path: one with the
// mount's own mappings, else the one the container joins, else one with the container's mappings (a
// twin of the container's own, which does not exist yet).
func idmapTreeUserns(s *specs.Spec, m specs.Mount, cache map[string]*os.File) (*os.File, error) {
	cached := func(key string, open func() (*os.File, error)) (*os.File, error) {
		if ns := cache[key]; ns != nil {
			return ns, nil
		}
		ns, err := open()
		if err != nil {
			return nil, err
		}
		cache[key] = ns
		return ns, nil
	}
	if len(m.UIDMappings) == 0 && len(m.GIDMappings) == 0 {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.UserNamespace || ns.Path == "" {
				continue
			}
			return cached("path:"+ns.Path, func() (*os.File, error) {
				f, err := os.Open(ns.Path)
				if err != nil {
					return nil, fmt.Errorf("open the user namespace to map by: %w", err)
				}
				return f, nil
			})
		}
	}
	uid, gid, err := idmapMaps(s, m)
	if err != nil {
		return nil, err
	}
	return cached("map:"+mountIDMapText(uid)+"\x00"+mountIDMapText(gid), func() (*os.File, error) {
		return mountIDMapUserns(uid, gid)
	})
}

// CloseIDMapTrees closes what IDMapTrees returned.
func CloseIDMapTrees(trees map[int]*os.File) {
	for _, t := range trees {
		t.Close()
	}
}

// idmapMaps returns the mount's ID mappings, or the container's when idmap/ridmap names none.
func idmapMaps(s *specs.Spec, m specs.Mount) (uid, gid []specs.LinuxIDMapping, err error) {
	uid, gid = m.UIDMappings, m.GIDMappings
	if len(uid) == 0 && len(gid) == 0 && s.Linux != nil {
		uid, gid = s.Linux.UIDMappings, s.Linux.GIDMappings
	}
	if len(uid) == 0 || len(gid) == 0 {
		return nil, nil, errors.New("an ID-mapped mount needs uidMappings and gidMappings")
	}
	return uid, gid, nil
}

// idmapBind attaches an ID-mapped clone of the bind source onto target: the one the parent made, or
// else one made here.
func (r *rootfsMounter) idmapBind(m specs.Mount, o MountOptions, target *os.File) error {
	var tree *os.File
	if fd, ok := r.opts.IDMapTrees[r.cur]; ok {
		tree = os.NewFile(uintptr(fd), "idmap-tree")
	} else {
		uid, gid, err := idmapMaps(r.spec, m)
		if err != nil {
			return err
		}
		ns, err := mountIDMapUserns(uid, gid)
		if err != nil {
			return err
		}
		defer ns.Close()
		if tree, err = idmapClone(m.Source, o, ns); err != nil {
			return err
		}
	}
	defer tree.Close()
	return mountMoveOnto(int(tree.Fd()), target)
}

// idmapClone clones the bind source (recursively for rbind) into a detached tree ID-mapped by the
// user namespace ns (every submount too for ridmap).
func idmapClone(source string, o MountOptions, ns *os.File) (*os.File, error) {
	flags := uint(unix.OPEN_TREE_CLONE | unix.OPEN_TREE_CLOEXEC)
	if o.Recursive() {
		flags |= unix.AT_RECURSIVE
	}
	fd, err := unix.OpenTree(unix.AT_FDCWD, source, flags)
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", source, err)
	}
	tree := os.NewFile(uintptr(fd), "idmap-tree")
	if err := idmapSetattr(fd, o, ns); err != nil {
		tree.Close()
		return nil, err
	}
	return tree, nil
}

// idmapInPlace replaces the filesystem just mounted (mnt, over target) by an ID-mapped clone of it
// and returns a handle to the clone.
func (r *rootfsMounter) idmapInPlace(m specs.Mount, o MountOptions, target, mnt *os.File) (*os.File, error) {
	uid, gid, err := idmapMaps(r.spec, m)
	if err != nil {
		return nil, err
	}
	ns, err := mountIDMapUserns(uid, gid)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	tree, err := unix.OpenTree(int(mnt.Fd()), "", unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_EMPTY_PATH|unix.AT_RECURSIVE)
	if err != nil {
		return nil, fmt.Errorf("clone mount: %w", err)
	}
	defer unix.Close(tree)
	if err := idmapSetattr(tree, o, ns); err != nil {
		return nil, err
	}
	if err := unix.Unmount(mountProcPath(mnt), unix.MNT_DETACH); err != nil {
		return nil, fmt.Errorf("unmount the unmapped mount: %w", err)
	}
	if err := mountMoveOnto(tree, target); err != nil {
		return nil, err
	}
	return r.open(m.Destination)
}

// idmapSetattr ID-maps the detached tree by the user namespace ns.
func idmapSetattr(tree int, o MountOptions, ns *os.File) error {
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(ns.Fd())}
	flags := uint(unix.AT_EMPTY_PATH)
	if o.IDMapRec {
		flags |= unix.AT_RECURSIVE
	}
	if err := unix.MountSetattr(tree, "", flags, &attr); err != nil {
		return fmt.Errorf("the kernel refused an ID-mapped mount of this filesystem: %w", err)
	}
	return nil
}

// IDMapSupported reports whether the kernel has mount_setattr (Linux 5.12), which ID-mapped mounts need.
func IDMapSupported() bool {
	var attr unix.MountAttr
	err := unix.MountSetattr(-1, "", unix.AT_EMPTY_PATH, &attr)
	return !errors.Is(err, unix.ENOSYS)
}

// mountPidfdGetUserNS is PIDFD_GET_USER_NAMESPACE, _IO(0xFF, 9) (Linux 6.11), absent from x/sys.
const mountPidfdGetUserNS = 0xff09

// mountIDMapUserns returns a user namespace with the given mappings for MOUNT_ATTR_IDMAP. A Go
// process cannot unshare a user namespace, so a helper child is created in one: it execs itself
// under PTRACE_TRACEME and stops right after exec, running nothing, until it is killed here. The maps
// are written here rather than by os/exec, which would address the child by its pid in our pid
// namespace while /proc may still be the host's (the init runs in a new pid namespace).
func mountIDMapUserns(uid, gid []specs.LinuxIDMapping) (*os.File, error) {
	pidfd := -1
	cmd := &exec.Cmd{Path: "/proc/self/exe", Args: []string{"knast-idmap-userns"}, Env: []string{}}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: unix.CLONE_NEWUSER,
		Ptrace:     true,
		Pdeathsig:  unix.SIGKILL,
		PidFD:      &pidfd,
	}
	// Pdeathsig and ptrace are tied to the creating thread.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start ID-mapping helper: %w", err)
	}
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		unix.Close(pidfd)
	}()
	procPid, err := mountProcPid(pidfd)
	if err != nil {
		return nil, err
	}
	dir := "/proc/" + strconv.Itoa(procPid)
	if err := os.WriteFile(dir+"/uid_map", []byte(mountIDMapText(uid)), 0); err != nil {
		return nil, fmt.Errorf("write ID-mapping helper uid_map: %w", err)
	}
	if err := os.WriteFile(dir+"/gid_map", []byte(mountIDMapText(gid)), 0); err != nil {
		return nil, fmt.Errorf("write ID-mapping helper gid_map: %w", err)
	}
	if fd, err := unix.IoctlRetInt(pidfd, mountPidfdGetUserNS); err == nil {
		return os.NewFile(uintptr(fd), "userns"), nil
	}
	f, err := os.Open(dir + "/ns/user")
	if err != nil {
		return nil, fmt.Errorf("open ID-mapping user namespace: %w", err)
	}
	return f, nil
}

// mountProcPid reads the pid a pidfd refers to as numbered by the mounted /proc's pid namespace.
func mountProcPid(pidfd int) (int, error) {
	b, err := os.ReadFile("/proc/thread-self/fdinfo/" + strconv.Itoa(pidfd))
	if err != nil {
		return 0, fmt.Errorf("read pidfd info: %w", err)
	}
	return mountPidFromFdinfo(string(b))
}
