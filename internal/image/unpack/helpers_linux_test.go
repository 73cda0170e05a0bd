package unpack

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ent is one tar entry of a test layer; body is the content of a regular file.
type ent struct {
	tar.Header
	body string
}

var t0 = time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)

func file(name, body string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body)), ModTime: t0}, body: body}
}

func dir(name string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, ModTime: t0}}
}

func symlink(name, target string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: t0}}
}

func hardlink(name, target string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: t0}}
}

func whiteout(name string) ent {
	return file(filepath.Join(filepath.Dir(name), whPrefix+filepath.Base(name)), "")
}

func with(e ent, f func(h *tar.Header)) ent {
	f(&e.Header)
	return e
}

// layerTar writes ents as a tar stream (PAX where needed).
func layerTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.Header
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		if _, err := io.WriteString(tw, e.body); err != nil {
			t.Fatalf("tar body %s: %v", h.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func gzipped(t testing.TB, b []byte) []byte {
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return out.Bytes()
}

func zstded(t testing.TB, b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

func readers(layers ...[]byte) []io.Reader {
	var rs []io.Reader
	for _, l := range layers {
		rs = append(rs, bytes.NewReader(l))
	}
	return rs
}

// snapshot describes every path under root (the root itself excluded) as one line: type,
// mode, owner, size, content hash or link target, device, xattrs and, when mtimes is set,
// the mtime of everything but symlinks.
func snapshot(t testing.TB, root string, mtimes bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		line := fmt.Sprintf("%s %04o %d:%d", typeName(st.Mode), st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s nlink=%d", st.Size, hex.EncodeToString(sum[:6]), st.Nlink)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			line += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" dev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if xs := listXattrsPath(p); len(xs) > 0 {
			line += " xattrs=" + strings.Join(xs, ",")
		}
		if mtimes && st.Mode&unix.S_IFMT != unix.S_IFLNK {
			line += " mtime=" + time.Unix(st.Mtim.Unix()).UTC().Format(time.RFC3339Nano)
		}
		out[rel] = line
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot %s: %v", root, err)
	}
	return out
}

func typeName(m uint32) string {
	return map[uint32]string{unix.S_IFREG: "file", unix.S_IFDIR: "dir", unix.S_IFLNK: "symlink",
		unix.S_IFCHR: "char", unix.S_IFBLK: "block", unix.S_IFIFO: "fifo", unix.S_IFSOCK: "sock"}[m&unix.S_IFMT]
}

func listXattrsPath(p string) []string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	var out []string
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 4096)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			continue
		}
		out = append(out, fmt.Sprintf("%s=%x", name, v[:m]))
	}
	sort.Strings(out)
	return out
}

// sentinel makes a directory with a file beside the test root and returns a check that fails
// the test if anything in it changed or anything was added.
func sentinel(t *testing.T, base string) (dir string, check func()) {
	t.Helper()
	dir = filepath.Join(base, "outside")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keep", "sub/keep", "passwd"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("sentinel "+f), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []string{"keep", "sub/keep", "passwd", "sub", "."} {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	want := snapshot(t, dir, true)
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		t.Fatal(err)
	}
	return dir, func() {
		t.Helper()
		got := snapshot(t, dir, true)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("outside of the root changed:\n got %v\nwant %v", got, want)
		}
		var now unix.Stat_t
		if err := unix.Lstat(dir, &now); err != nil || now.Mtim != st.Mtim || now.Mode != st.Mode || now.Uid != st.Uid {
			t.Errorf("sentinel dir itself changed: %+v (err %v)", now, err)
		}
	}
}
