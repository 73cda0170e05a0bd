//go:build linux || freebsd

package unpack

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

const (
	whPrefix = ".wh."
	whOpaque = ".wh..wh..opq"
	whMeta   = ".wh..wh." // aufs bookkeeping entries, not whiteouts
)

type xattr struct {
	name  string
	value []byte
}

// extractor applies layers to one tree. Only one goroutine uses it.
type extractor struct {
	ctx     context.Context
	t       *tree
	o       Options
	st      Stats
	written int64               // regular file bytes written, against MaxBytes
	upper   map[string]struct{} // resolved paths made by this layer, and their ancestors
	dirs    map[string]*dirMeta // directory metadata to set when the layer is done
	buf     []byte
}

// dirMeta is applied after a layer's last entry, because adding or removing children changes
// a directory's mtime and a read-only mode would block them. Directories the layer only
// modified get their old times back, as umoci does.
type dirMeta struct {
	atime, mtime unix.Timespec
	mode         uint32
	setMode      bool
}

// extract applies layers to root; a root it had to create is removed again on failure.
func extract(ctx context.Context, root string, layers []io.Reader, o Options) (Stats, error) {
	_, statErr := os.Lstat(root)
	if err := makeRoot(root); err != nil {
		return Stats{}, err
	}
	st, err := extractInto(ctx, root, layers, o)
	if err != nil && errors.Is(statErr, fs.ErrNotExist) {
		os.RemoveAll(root)
	}
	return st, err
}

func extractInto(ctx context.Context, root string, layers []io.Reader, o Options) (Stats, error) {
	t, err := openTree(root)
	if err != nil {
		return Stats{}, err
	}
	defer t.close()
	x := &extractor{ctx: ctx, t: t, o: o, buf: make([]byte, 1<<20)}
	for i, l := range layers {
		want := ""
		if len(o.DiffIDs) > 0 {
			want = o.DiffIDs[i]
		}
		if err := x.layer(l, want); err != nil {
			return x.st, fmt.Errorf("unpack layer %d into %s: %w", i, root, err)
		}
	}
	return x.st, nil
}

// makeRoot creates root, and its parent 0700 when that is missing so other users cannot
// reach into a rootfs (setuid binaries, devices) through it.
func makeRoot(root string) error {
	if root == "" {
		return errors.New("unpack: empty root path")
	}
	root = filepath.Clean(root)
	parent := filepath.Dir(root)
	if _, err := os.Stat(parent); errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(parent, 0o700); err != nil {
			return fmt.Errorf("create rootfs parent: %w", err)
		}
	} else if err != nil {
		return fmt.Errorf("stat rootfs parent: %w", err)
	}
	if err := os.Mkdir(root, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create rootfs: %w", err)
	}
	return nil
}

func (x *extractor) layer(r io.Reader, diffID string) error {
	dr, done, err := r, func() {}, error(nil)
	if !x.o.Uncompressed {
		dr, done, err = decompress(r)
	}
	if err != nil {
		return err
	}
	defer done()
	var sum hash.Hash
	if diffID != "" {
		if !strings.HasPrefix(diffID, "sha256:") {
			return fmt.Errorf("diff id %q: only sha256 is supported", diffID)
		}
		sum = sha256.New()
		dr = io.TeeReader(dr, sum)
	}
	in := &budget{ctx: x.ctx, r: dr, max: x.o.MaxBytes, n: &x.st.Bytes,
		limit: fmt.Errorf("more than %d uncompressed bytes: %w", x.o.MaxBytes, ErrLimit)}
	tr := tar.NewReader(bufio.NewReaderSize(in, 64<<10))
	x.upper = map[string]struct{}{}
	x.dirs = map[string]*dirMeta{}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read tar: %w", err)
		}
		if x.st.Entries++; x.o.MaxEntries >= 0 && x.st.Entries > x.o.MaxEntries {
			return fmt.Errorf("more than %d entries: %w", x.o.MaxEntries, ErrLimit)
		}
		x.t.reap()
		if err := x.entry(hdr, tr); err != nil {
			return err
		}
	}
	// Read to the end so the decompressor checks its trailer (gzip CRC, zstd checksum).
	if _, err := io.CopyBuffer(io.Discard, in, x.buf); err != nil {
		return fmt.Errorf("read layer trailer: %w", err)
	}
	if sum != nil {
		if got := "sha256:" + hex.EncodeToString(sum.Sum(nil)); got != diffID {
			return fmt.Errorf("uncompressed content has %s, the image says %s: %w", got, diffID, ErrDiffID)
		}
	}
	return x.finishDirs()
}

func (x *extractor) entry(hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	name, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if name == "" {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("entry %q: the root can only be a directory: %w", hdr.Name, ErrUnsafePath)
		}
		return wrap(hdr, x.rootDir(hdr))
	}
	dir, base := splitName(name)
	if strings.HasPrefix(base, whPrefix) {
		return wrap(hdr, x.whiteout(dir, base))
	}
	if hdr.Size < 0 {
		return fmt.Errorf("entry %q: negative size %d", hdr.Name, hdr.Size)
	}
	if isRegular(hdr) && x.o.MaxBytes >= 0 && hdr.Size > x.o.MaxBytes-x.written {
		return fmt.Errorf("entry %q: size %d exceeds the remaining budget: %w", hdr.Name, hdr.Size, ErrLimit)
	}
	pfd, pres, err := x.t.parent(dir, walkCreate)
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	x.touch(pfd, pres)
	p := joinName(pres, base)
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = x.dir(pfd, base, p, hdr)
	case tar.TypeReg, '\x00':
		err = x.regular(pfd, base, hdr, r)
	case tar.TypeSymlink:
		if err = x.clobber(pfd, base); err == nil {
			if err = unix.Symlinkat(hdr.Linkname, pfd, base); err == nil {
				err = x.meta(pfd, base, -1, hdr, false)
			}
		}
	case tar.TypeLink:
		err = x.hardlink(pfd, base, name, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = x.node(pfd, base, hdr)
	default:
		err = fmt.Errorf("unsupported tar type %q", hdr.Typeflag)
	}
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	for q := p; q != ""; q, _ = splitName(q) {
		if _, ok := x.upper[q]; ok {
			break
		}
		x.upper[q] = struct{}{}
	}
	return nil
}

func wrap(hdr *tar.Header, err error) error {
	if err != nil {
		return fmt.Errorf("entry %q: %w", hdr.Name, err)
	}
	return nil
}

func isRegular(hdr *tar.Header) bool {
	return hdr.Typeflag == tar.TypeReg || hdr.Typeflag == '\x00'
}

// touch remembers a directory's times before the layer changes its contents.
func (x *extractor) touch(fd int, p string) {
	if _, ok := x.dirs[p]; ok {
		return
	}
	var st unix.Stat_t
	if unix.Fstat(fd, &st) == nil {
		x.dirs[p] = &dirMeta{atime: st.Atim, mtime: st.Mtim}
	}
}

// clobberKeepDir removes whatever is at base unless it is a directory, which it keeps and
// reports (a directory entry over a directory only updates its metadata).
func (x *extractor) clobberKeepDir(pfd int, base string) (bool, error) {
	st, err := lstatAt(pfd, base)
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return true, nil
	}
	return false, x.t.removeAt(pfd, base)
}

// clobber removes whatever is at base: every non-directory entry replaces the lower path.
func (x *extractor) clobber(pfd int, base string) error {
	return x.t.removeAt(pfd, base)
}

func (x *extractor) rootDir(hdr *tar.Header) error {
	if err := x.meta(x.t.root, ".", -1, hdr, true); err != nil {
		return err
	}
	x.dirs[""] = headerDirMeta(hdr)
	return nil
}

func (x *extractor) dir(pfd int, base, p string, hdr *tar.Header) error {
	kept, err := x.clobberKeepDir(pfd, base)
	if err != nil {
		return err
	}
	if !kept {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
	}
	if err := x.metaNoTimes(pfd, base, -1, hdr, kept); err != nil {
		return err
	}
	x.dirs[p] = headerDirMeta(hdr)
	return nil
}

func (x *extractor) regular(pfd int, base string, hdr *tar.Header, r io.Reader) (err error) {
	if err := x.clobber(pfd, base); err != nil {
		return err
	}
	fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	f := os.NewFile(uintptr(fd), base)
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("close: %w", cerr)
		}
		if err != nil {
			unix.Unlinkat(pfd, base, 0) // no partial file left behind
		}
	}()
	// The struct hides os.File's ReadFrom so the copy uses our large buffer.
	n, err := io.CopyBuffer(struct{ io.Writer }{f}, r, x.buf)
	x.written += n
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != hdr.Size {
		return fmt.Errorf("write: %d of %d bytes: %w", n, hdr.Size, io.ErrUnexpectedEOF)
	}
	return x.meta(pfd, base, fd, hdr, true)
}

// hardlink links base to an entry already in the root. The target is looked up without
// following any symlink, so a link can neither leave the root nor pass through a symlink.
func (x *extractor) hardlink(pfd int, base, name string, hdr *tar.Header) error {
	target, err := cleanName(hdr.Linkname)
	if err != nil {
		return fmt.Errorf("hardlink target: %w", err)
	}
	if target == "" {
		return fmt.Errorf("hardlink to the root: %w", ErrUnsafePath)
	}
	if target == name {
		return nil
	}
	tdir, tbase := splitName(target)
	tfd, _, err := x.t.openDir(tdir, walkNoFollow)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(tfd)
	st, err := lstatAt(tfd, tbase)
	if err != nil {
		return fmt.Errorf("hardlink target %q: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hardlink target %q is a directory", hdr.Linkname)
	}
	if err := x.clobber(pfd, base); err != nil {
		return err
	}
	if err := unix.Linkat(tfd, tbase, pfd, base, 0); err != nil {
		return fmt.Errorf("link to %q: %w", hdr.Linkname, err)
	}
	return nil
}

func (x *extractor) node(pfd int, base string, hdr *tar.Header) error {
	typ := uint32(unix.S_IFIFO)
	switch hdr.Typeflag {
	case tar.TypeChar:
		typ = unix.S_IFCHR
	case tar.TypeBlock:
		typ = unix.S_IFBLK
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > 0xfff || hdr.Devminor < 0 || hdr.Devminor > 0xfffff {
		return fmt.Errorf("device number %d:%d out of range", hdr.Devmajor, hdr.Devminor)
	}
	if err := x.clobber(pfd, base); err != nil {
		return err
	}
	if x.o.Rootless && typ != unix.S_IFIFO {
		x.st.SkippedDevices++
		return nil
	}
	err := mknodAt(pfd, base, typ|uint32(hdr.Mode&0o7777), hdr.Devmajor, hdr.Devminor)
	if errors.Is(err, unix.EPERM) {
		x.st.SkippedDevices++ // in a user namespace, or a nodev-enforcing LSM
		return nil
	}
	if err != nil {
		return fmt.Errorf("mknod: %w", err)
	}
	return x.meta(pfd, base, -1, hdr, true)
}

// meta applies owner, mode (unless a symlink), xattrs and times to base in pfd (or to fd
// when >= 0) without following a final symlink.
func (x *extractor) meta(pfd int, base string, fd int, hdr *tar.Header, clear bool) error {
	if err := x.metaNoTimes(pfd, base, fd, hdr, clear); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeSymlink && hdr.Typeflag != tar.TypeDir {
		mode := uint32(hdr.Mode & 0o7777)
		var err error
		if fd >= 0 {
			err = unix.Fchmod(fd, mode)
		} else {
			err = chmodAt(pfd, base, mode)
		}
		if err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		return nil // times and mode come with the layer's directory pass
	}
	m := headerDirMeta(hdr)
	if err := unix.UtimesNanoAt(pfd, base, []unix.Timespec{m.atime, m.mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("utimes: %w", err)
	}
	return nil
}

// metaNoTimes sets owner and xattrs; the owner goes first since chown drops capabilities.
func (x *extractor) metaNoTimes(pfd int, base string, fd int, hdr *tar.Header, clear bool) error {
	if !x.o.Rootless {
		uid, err := mapID(x.o.UIDMap, hdr.Uid)
		if err != nil {
			return fmt.Errorf("uid: %w", err)
		}
		gid, err := mapID(x.o.GIDMap, hdr.Gid)
		if err != nil {
			return fmt.Errorf("gid: %w", err)
		}
		if fd >= 0 {
			err = unix.Fchown(fd, uid, gid)
		} else {
			err = unix.Fchownat(pfd, base, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
		}
		if err != nil {
			return fmt.Errorf("chown %d:%d: %w", uid, gid, err)
		}
	}
	xs := headerXattrs(hdr)
	return setXattrs(pfd, base, fd, xs, clear && hdr.Typeflag == tar.TypeDir, func(n string, err error) error {
		if xattrUnsupported(err) || (x.o.Rootless && errors.Is(err, unix.EPERM)) {
			x.st.SkippedXattrs++
			return nil
		}
		return fmt.Errorf("xattr %s: %w", n, err)
	})
}

func headerXattrs(hdr *tar.Header) []xattr {
	var xs []xattr
	for k, v := range hdr.PAXRecords {
		if n, ok := strings.CutPrefix(k, "SCHILY.xattr."); ok && n != "" && !ignoredXattr(n) {
			xs = append(xs, xattr{name: n, value: []byte(v)})
		}
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].name < xs[j].name })
	return xs
}

// ignoredXattr: host-specific labels that images must not carry (as umoci), and overlayfs's own
// metadata, which a layer must not forge (opaque dirs, redirects) for a rootfs mounted over it.
func ignoredXattr(n string) bool {
	return n == "security.selinux" || n == "system.nfs4_acl" || strings.HasPrefix(n, "trusted.overlay.")
}

func headerDirMeta(hdr *tar.Header) *dirMeta {
	mtime := hdr.ModTime
	if mtime.IsZero() {
		mtime = time.Now()
	}
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = mtime
	}
	return &dirMeta{atime: toTimespec(atime), mtime: toTimespec(mtime), mode: uint32(hdr.Mode & 0o7777), setMode: true}
}

func toTimespec(t time.Time) unix.Timespec {
	ts, err := unix.TimeToTimespec(t)
	if err != nil {
		return unix.Timespec{} // out of range for this platform: the epoch
	}
	return ts
}

// whiteout removes lower-layer content: ".wh.NAME" removes NAME, ".wh..wh..opq" the
// directory's children. Paths this layer created (x.upper) survive, as the spec requires.
func (x *extractor) whiteout(dir, base string) error {
	if base == whOpaque {
		fd, res, err := x.t.parent(dir, walkFollow)
		if isNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("opaque whiteout: %w", err)
		}
		x.touch(fd, res)
		return eachChild(fd, ".", func(cfd int, child string) error {
			return x.removeLower(cfd, child, joinName(res, child))
		})
	}
	if strings.HasPrefix(base, whMeta) {
		return nil
	}
	name := strings.TrimPrefix(base, whPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("whiteout of %q: %w", name, ErrUnsafePath)
	}
	pfd, pres, err := x.t.parent(dir, walkFollow)
	if isNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("whiteout: %w", err)
	}
	x.touch(pfd, pres)
	return x.removeLower(pfd, name, joinName(pres, name))
}

func (x *extractor) removeLower(dirfd int, name, rel string) error {
	if _, ok := x.upper[rel]; !ok {
		return x.t.removeAt(dirfd, name)
	}
	st, err := lstatAt(dirfd, name)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return eachChild(dirfd, name, func(fd int, child string) error {
		return x.removeLower(fd, child, rel+"/"+child)
	})
}

func isNotExist(err error) bool {
	return errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR)
}

// finishDirs sets the mode and times of every directory the layer declared or changed.
func (x *extractor) finishDirs() error {
	for p, m := range x.dirs {
		fd, _, err := x.t.openDir(p, walkNoFollow)
		if err != nil {
			continue // replaced or removed later in the layer: nothing to restore
		}
		if m.setMode {
			err = chmodAt(fd, ".", m.mode)
		}
		if err == nil {
			err = unix.UtimesNanoAt(fd, ".", []unix.Timespec{m.atime, m.mtime}, unix.AT_SYMLINK_NOFOLLOW)
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("directory %q metadata: %w", "/"+p, err)
		}
	}
	return nil
}
