package image

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/image/unpack"
)

// errNoLowerdirPlus: the kernel's overlayfs predates "lowerdir+" (Linux 6.8), so the layers must go
// through mount(2)'s option string instead.
var errNoLowerdirPlus = errors.New(`overlayfs has no "lowerdir+" parameter`)

// overlaySupported checks that this process may create overlay mounts at all.
func overlaySupported() error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err == nil {
		unix.Close(fd)
		return nil
	}
	if errors.Is(err, unix.ENOSYS) && unix.Geteuid() == 0 {
		if b, rerr := os.ReadFile("/proc/filesystems"); rerr == nil && strings.Contains(string(b), "\toverlay\n") {
			return nil
		}
	}
	return fmt.Errorf("%w: fsopen overlay: %v", ErrNoOverlay, err)
}

// overlayFd configures an overlay of lowers (lowest first) with upper and work dirs through the new
// mount API, one "lowerdir+" per layer, so the number of layers is not bounded by a page of mount
// options. It returns a detached mount: nothing appears in the mount table, and closing the fd
// unmounts it, even when the process dies.
func overlayFd(lowers []string, upper, work string) (int, error) {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	for i := len(lowers) - 1; i >= 0; i-- { // the top layer first
		if err := unix.FsconfigSetString(fsfd, "lowerdir+", lowers[i]); err != nil {
			if errors.Is(err, unix.EINVAL) && i == len(lowers)-1 {
				return -1, errNoLowerdirPlus
			}
			return -1, fsError(fsfd, "lowerdir+="+lowers[i], err)
		}
	}
	for _, kv := range [][2]string{{"upperdir", upper}, {"workdir", work}} {
		if err := unix.FsconfigSetString(fsfd, kv[0], kv[1]); err != nil {
			return -1, fsError(fsfd, kv[0]+"="+kv[1], err)
		}
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return -1, fsError(fsfd, "create overlay", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return -1, fsError(fsfd, "fsmount overlay", err)
	}
	return mfd, nil
}

// fsError adds the kernel's messages for a filesystem context (read from its fd) to err.
func fsError(fsfd int, what string, err error) error {
	var msgs []string
	buf := make([]byte, 1024)
	for range 8 {
		n, rerr := unix.Read(fsfd, buf)
		if rerr != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) > 0 {
		return fmt.Errorf("%s: %w (%s)", what, err, strings.Join(msgs, "; "))
	}
	return fmt.Errorf("%s: %w", what, err)
}

// mountClassic mounts the overlay at target with mount(2), for kernels before "lowerdir+". The
// option string must fit in a page.
func mountClassic(lowers []string, upper, work, target string) error {
	parts := make([]string, 0, len(lowers))
	for i := len(lowers) - 1; i >= 0; i-- {
		parts = append(parts, lowers[i])
	}
	for _, p := range append(parts, upper, work) {
		if strings.ContainsAny(p, ":,\\") {
			return fmt.Errorf("path %q has a character overlay options cannot carry", p)
		}
	}
	opts := "lowerdir=" + strings.Join(parts, ":") + ",upperdir=" + upper + ",workdir=" + work
	if len(opts) >= os.Getpagesize() {
		return fmt.Errorf("%d layers need %d bytes of mount options, more than a page", len(lowers), len(opts))
	}
	if err := unix.Mount("overlay", target, "overlay", 0, opts); err != nil {
		return fmt.Errorf("mount overlay at %s: %w", target, err)
	}
	return nil
}

// mountAt mounts an overlay of lowers at target.
func mountAt(lowers []string, upper, work, target string) error {
	mfd, err := overlayFd(lowers, upper, work)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, errNoLowerdirPlus) {
		return mountClassic(lowers, upper, work, target)
	}
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("attach overlay at %s: %w", target, err)
	}
	return nil
}

// mountRootfs mounts lowers at rootfs with a new upper and work dir in stateDir.
func mountRootfs(rootfs, stateDir string, lowers []string) error {
	upper, work := filepath.Join(stateDir, "upper"), filepath.Join(stateDir, "work")
	if err := os.Mkdir(stateDir, 0o700); err != nil {
		return fmt.Errorf("overlay dirs: %w", err)
	}
	err := os.Mkdir(upper, 0o755)
	if err == nil {
		err = os.Mkdir(work, 0o700)
	}
	if err == nil {
		err = copyDirMeta(upper, lowers[len(lowers)-1])
	}
	if err == nil {
		err = mountAt(lowers, upper, work, rootfs)
		if err != nil {
			err = fmt.Errorf("%w: %v", ErrNoOverlay, err)
		}
	}
	if err != nil {
		os.RemoveAll(stateDir)
		return err
	}
	return nil
}

// unpackOnOverlay unpacks one layer into tmp/diff: directly for the lowest layer, else through an
// overlay of lowers with tmp/diff as its upper dir, so the kernel writes the layer's changes as an
// overlayfs upper (whiteouts, copied-up dirs). blob is the layer's uncompressed tar (unpack.Decompress),
// which must match diffID.
func unpackOnOverlay(ctx context.Context, tmp string, blob io.Reader, diffID string, lowers []string) error {
	diff := filepath.Join(tmp, "diff")
	opts := unpack.Options{DiffIDs: []string{diffID}, Uncompressed: true}
	if len(lowers) == 0 {
		_, err := unpack.Extract(ctx, diff, []io.Reader{blob}, opts)
		return err
	}
	work := filepath.Join(tmp, "work")
	if err := os.Mkdir(diff, 0o755); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	if err := os.Mkdir(work, 0o700); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	if err := copyDirMeta(diff, lowers[len(lowers)-1]); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	mfd, err := overlayFd(lowers, diff, work)
	switch {
	case err == nil:
		_, err = unpack.Extract(ctx, "/proc/self/fd/"+strconv.Itoa(mfd), []io.Reader{blob}, opts)
		unix.Close(mfd) // the last reference: the detached overlay is unmounted here
	case errors.Is(err, unix.ENOSYS) || errors.Is(err, errNoLowerdirPlus):
		merged := filepath.Join(tmp, "merged")
		if err = os.Mkdir(merged, 0o700); err != nil {
			return fmt.Errorf("layer cache: %w", err)
		}
		if err = mountClassic(lowers, diff, work, merged); err != nil {
			return fmt.Errorf("%w: %v", ErrNoOverlay, err)
		}
		_, err = unpack.Extract(ctx, merged, []io.Reader{blob}, opts)
		if uerr := unmountOverlay(merged); uerr != nil && err == nil {
			err = uerr
		}
	default:
		return fmt.Errorf("%w: %v", ErrNoOverlay, err)
	}
	if err != nil {
		return err
	}
	if err := os.RemoveAll(work); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	os.Remove(filepath.Join(tmp, "merged"))
	return nil
}

// overlayAt returns whether an overlay is mounted on top at path (symlinks resolved).
func overlayAt(path string) (bool, error) {
	p, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("resolve %s: %w", path, err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
	if err != nil {
		return false, fmt.Errorf("read mounts: %w", err)
	}
	// Mounts stacked on one point are listed bottom first.
	return len(ms) > 0 && ms[len(ms)-1].FSType == "overlay", nil
}

func isOverlayMount(path string) bool {
	ok, _ := overlayAt(path)
	return ok
}

// unmountOverlay unmounts every overlay stacked at path; a busy one is detached.
func unmountOverlay(path string) error {
	for range 16 {
		ok, err := overlayAt(path)
		if err != nil || !ok {
			return err
		}
		err = unix.Unmount(path, 0)
		if errors.Is(err, unix.EBUSY) {
			err = unix.Unmount(path, unix.MNT_DETACH)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount %s: still an overlay after 16 unmounts", path)
}

// copyDirMeta gives dst the owner, mode and times of src: an overlay's root directory shows its
// upper dir's attributes, which must be those of the image's root.
func copyDirMeta(dst, src string) error {
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return fmt.Errorf("stat %s: %w", src, err)
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod %s: %w", dst, err)
	}
	if err := unix.UtimesNano(dst, []unix.Timespec{st.Atim, st.Mtim}); err != nil {
		return fmt.Errorf("utimes %s: %w", dst, err)
	}
	return nil
}
