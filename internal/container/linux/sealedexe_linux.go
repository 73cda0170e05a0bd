//go:build linux

package linux

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// sealedExe returns a handle on the running binary that no process can open for writing, for the
// re-exec of `knast init` (CVE-2019-5736: a container must never reach the host's knast binary through
// /proc/<pid>/exe of a knast process running inside it).
//
// The fast way is the binary seen through a detached overlayfs mount with only lower layers: such an
// overlay is read-only at the superblock, so not even a clone of the mount made writable can write
// through it, and it costs a few syscalls instead of copying megabytes (runc 1.2 does the same). Where
// overlayfs is unavailable (old kernel, binary on a filesystem overlay cannot stack on, deleted binary),
// the sealed memfd copy is the fallback.
func sealedExe() (*os.File, error) {
	if f, err := sealedExeOverlay(); err == nil {
		return f, nil
	}
	return memfdSealedExe()
}

func sealedExeOverlay() (*os.File, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, err
	}
	if strings.HasSuffix(exe, " (deleted)") || !filepath.IsAbs(exe) {
		return nil, fmt.Errorf("binary %q is not on a path overlayfs can use", exe)
	}
	dir, base := filepath.Split(exe)
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	// Overlay refuses a single lower layer without an upper one: the second is an empty detached tmpfs,
	// so nothing but the binary's directory is visible through the mount.
	empty, err := sealedExeEmptyDir()
	if err != nil {
		return nil, err
	}
	defer unix.Close(empty)
	for _, lower := range []string{dir, "/proc/self/fd/" + fmt.Sprint(empty)} {
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", lower); err != nil {
			return nil, fmt.Errorf("overlay lowerdir %s: %w", lower, err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("overlay create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOSUID)
	if err != nil {
		return nil, fmt.Errorf("overlay mount: %w", err)
	}
	defer unix.Close(mfd)
	fd, err := unix.Openat(mfd, base, unix.O_PATH|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s in overlay: %w", base, err)
	}
	return os.NewFile(uintptr(fd), "knast-sealed"), nil
}

// sealedExeEmptyDir is an empty, detached, read-only tmpfs: the second lower layer of the overlay.
func sealedExeEmptyDir() (int, error) {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "size", "4k"); err != nil {
		return -1, err
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fmt.Errorf("tmpfs create: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_RDONLY)
	if err != nil {
		return -1, fmt.Errorf("tmpfs mount: %w", err)
	}
	return mfd, nil
}
