package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/klauspost/compress/gzip"
	"golang.org/x/sys/unix"
)

// mountOverlay mounts an overlay of lowers (lowest first) on target: writable into upper (with
// work) or, when upper is "", read-only. index and redirect_dir stay off so the upper directory
// holds plain files, whiteouts and opaque directories only: a layer. A writable mount is volatile
// (no syncs of the upper filesystem per step): the build syncs once at its end, before it records
// the steps in the cache.
func mountOverlay(lowers []string, upper, work, target string) error {
	if len(lowers) == 0 {
		return errors.New("overlay: no lower directory")
	}
	top := slices.Clone(lowers)
	slices.Reverse(top)
	err := mountOverlayFsconfig(top, upper, work, target)
	if err == nil {
		return nil
	}
	// Kernels before 6.8 have no lowerdir+: one option string (at most a page long).
	opts := "lowerdir=" + strings.Join(top, ":")
	if upper != "" {
		opts += ",upperdir=" + upper + ",workdir=" + work
	}
	opts += ",index=off,redirect_dir=off"
	if upper != "" {
		opts += ",volatile"
	}
	var flags uintptr
	if upper == "" {
		flags = unix.MS_RDONLY
	}
	if merr := unix.Mount("overlay", target, "overlay", flags, opts); merr != nil {
		return fmt.Errorf("mount overlay on %s (%d lower directories): %w (new mount API: %v)", target, len(lowers), merr, err)
	}
	return nil
}

func mountOverlayFsconfig(top []string, upper, work, target string) error {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fd)
	for _, l := range top {
		if err := unix.FsconfigSetString(fd, "lowerdir+", l); err != nil {
			return fmt.Errorf("overlay lowerdir+ %s: %w", l, err)
		}
	}
	if upper != "" {
		if err := unix.FsconfigSetString(fd, "upperdir", upper); err != nil {
			return fmt.Errorf("overlay upperdir: %w", err)
		}
		if err := unix.FsconfigSetString(fd, "workdir", work); err != nil {
			return fmt.Errorf("overlay workdir: %w", err)
		}
		if err := unix.FsconfigSetFlag(fd, "volatile"); err != nil {
			return fmt.Errorf("overlay volatile: %w", err)
		}
	}
	for _, o := range []string{"index", "redirect_dir"} {
		if err := unix.FsconfigSetString(fd, o, "off"); err != nil {
			return fmt.Errorf("overlay %s=off: %w", o, err)
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fmt.Errorf("overlay create: %w", err)
	}
	var attr int
	if upper == "" {
		attr = unix.MOUNT_ATTR_RDONLY
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, attr)
	if err != nil {
		return fmt.Errorf("fsmount overlay: %w", err)
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount overlay to %s: %w", target, err)
	}
	return nil
}

// unmount detaches target; a busy mount (a straggler process) is detached lazily.
func unmount(target string) error {
	err := unix.Unmount(target, 0)
	if errors.Is(err, unix.EBUSY) {
		err = unix.Unmount(target, unix.MNT_DETACH)
	}
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", target, err)
	}
	return nil
}

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	opaqueXattr    = "trusted.overlay.opaque"
)

// isEmptyDir reports whether dir has no entries.
func isEmptyDir(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// writeLayer writes the overlay upper directory dir as an OCI layer tar: overlay whiteouts (0:0
// character devices) become .wh. entries, opaque directories get a .wh..wh..opq entry, hardlinks
// within the layer stay hardlinks, overlay's own xattrs are dropped. Entries are in lexical order,
// so the same directory always gives the same bytes.
func writeLayer(w io.Writer, dir string) error {
	tw := tar.NewWriter(w)
	links := map[[2]uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("layer: stat %s: %w", rel, err)
		}
		if st.Mode&unix.S_IFMT == unix.S_IFCHR && st.Rdev == 0 {
			parent, base := filepath.Split(rel)
			return tw.WriteHeader(&tar.Header{Name: parent + whiteoutPrefix + base, Typeflag: tar.TypeReg, Mode: 0, Format: tar.FormatPAX})
		}
		if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
			// A socket a RUN step left behind (a daemon's) cannot be in a layer; Docker skips them too.
			return nil
		}
		hdr, err := tarHeader(p, rel, &st)
		if err != nil {
			return err
		}
		xattrs, opaque, err := readXattrs(p)
		if err != nil {
			return fmt.Errorf("layer: %s: %w", rel, err)
		}
		for k, v := range xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if hdr.Typeflag == tar.TypeReg && st.Nlink > 1 {
			id := [2]uint64{st.Dev, st.Ino}
			if first, ok := links[id]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[id] = rel
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("layer: %s: %w", rel, err)
		}
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			f, err := os.Open(p)
			if err != nil {
				return fmt.Errorf("layer: %w", err)
			}
			_, err = io.Copy(tw, f)
			f.Close()
			if err != nil {
				return fmt.Errorf("layer: %s: %w", rel, err)
			}
		}
		if opaque && hdr.Typeflag == tar.TypeDir {
			if err := tw.WriteHeader(&tar.Header{Name: rel + "/" + opaqueMarker, Typeflag: tar.TypeReg, Mode: 0, Format: tar.FormatPAX}); err != nil {
				return fmt.Errorf("layer: %s: %w", rel, err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

func tarHeader(p, rel string, st *unix.Stat_t) (*tar.Header, error) {
	hdr := &tar.Header{
		Name:    rel,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: timeOf(st.Mtim),
		Format:  tar.FormatPAX,
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag, hdr.Name = tar.TypeDir, rel+"/"
	case unix.S_IFREG:
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
	case unix.S_IFLNK:
		target, err := os.Readlink(p)
		if err != nil {
			return nil, fmt.Errorf("layer: %w", err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR:
		hdr.Typeflag = tar.TypeChar
	case unix.S_IFBLK:
		hdr.Typeflag = tar.TypeBlock
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	}
	if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	}
	return hdr, nil
}

// readXattrs returns p's xattrs for the layer and whether overlay marked it opaque.
func readXattrs(p string) (map[string]string, bool, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			err = nil
		}
		return nil, false, err
	}
	buf := make([]byte, sz)
	if sz, err = unix.Llistxattr(p, buf); err != nil {
		return nil, false, fmt.Errorf("list xattrs: %w", err)
	}
	out := map[string]string{}
	opaque := false
	for _, name := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if name == "" || name == "security.selinux" {
			continue
		}
		v, err := getXattr(p, name)
		if err != nil {
			return nil, false, err
		}
		if strings.HasPrefix(name, "trusted.overlay.") {
			opaque = opaque || (name == opaqueXattr && v == "y")
			continue
		}
		out[name] = v
	}
	return out, opaque, nil
}

func getXattr(p, name string) (string, error) {
	sz, err := unix.Lgetxattr(p, name, nil)
	if err != nil {
		return "", fmt.Errorf("xattr %s: %w", name, err)
	}
	buf := make([]byte, sz)
	sz, err = unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", fmt.Errorf("xattr %s: %w", name, err)
	}
	return string(buf[:sz]), nil
}

// compressLayer writes the layer of dir gzip-compressed to w and returns its diff ID (the digest of
// the uncompressed tar).
func compressLayer(w io.Writer, dir string) (string, error) {
	zw, err := gzip.NewWriterLevel(w, gzip.BestSpeed)
	if err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	d := newDigester()
	if err := writeLayer(io.MultiWriter(zw, d), dir); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	return d.digest(), nil
}
