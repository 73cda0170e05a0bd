package build

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// An overlay upper directory becomes an OCI layer: whiteouts, opaque directories, hardlinks,
// owners, modes and xattrs.
func TestWriteLayer(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "etc/opaque"), 0o750))
	must(os.WriteFile(filepath.Join(dir, "etc/opaque/new"), []byte("n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "etc/file"), []byte("content"), 0o755))
	must(unix.Chmod(filepath.Join(dir, "etc/file"), 0o4755))
	must(os.Link(filepath.Join(dir, "etc/file"), filepath.Join(dir, "etc/hard")))
	must(os.Symlink("file", filepath.Join(dir, "etc/link")))
	must(os.Chown(filepath.Join(dir, "etc/opaque/new"), 1000, 2000))
	if err := unix.Mknod(filepath.Join(dir, "etc/gone"), unix.S_IFCHR, 0); err != nil {
		t.Skipf("mknod a whiteout needs CAP_MKNOD: %v", err)
	}
	if err := unix.Setxattr(filepath.Join(dir, "etc/opaque"), opaqueXattr, []byte("y"), 0); err != nil {
		if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
			t.Skipf("trusted xattrs are not available here: %v", err)
		}
		t.Fatal(err)
	}
	unix.Setxattr(filepath.Join(dir, "etc/file"), "user.note", []byte("kept"), 0)
	// A socket left by a RUN step is skipped (a layer cannot hold one).
	sock, err := net.Listen("unix", filepath.Join(dir, "etc/daemon.sock"))
	must(err)
	defer sock.Close()

	var buf bytes.Buffer
	must(writeLayer(&buf, dir))
	type ent struct {
		typ   byte
		mode  int64
		owner [2]int
		link  string
		body  string
		xattr string
	}
	got := map[string]ent{}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		must(err)
		b, _ := io.ReadAll(tr)
		got[hdr.Name] = ent{hdr.Typeflag, hdr.Mode, [2]int{hdr.Uid, hdr.Gid}, hdr.Linkname, string(b), hdr.PAXRecords["SCHILY.xattr.user.note"]}
		names = append(names, hdr.Name)
	}
	want := map[string]ent{
		"etc/":                    {tar.TypeDir, 0o750, [2]int{}, "", "", ""},
		"etc/.wh.gone":            {tar.TypeReg, 0, [2]int{}, "", "", ""},
		"etc/file":                {tar.TypeReg, 0o4755, [2]int{}, "", "content", got["etc/file"].xattr},
		"etc/hard":                {tar.TypeLink, 0o4755, [2]int{}, "etc/file", "", got["etc/hard"].xattr},
		"etc/link":                {tar.TypeSymlink, 0o777, [2]int{}, "file", "", ""},
		"etc/opaque/":             {tar.TypeDir, 0o750, [2]int{}, "", "", ""},
		"etc/opaque/.wh..wh..opq": {tar.TypeReg, 0, [2]int{}, "", "", ""},
		"etc/opaque/new":          {tar.TypeReg, 0o600, [2]int{1000, 2000}, "", "n", ""},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("layer entries:\n got %+v\nwant %+v", got, want)
	}
	if len(names) != len(want) {
		t.Errorf("%d entries, want %d (no duplicates): %v", len(names), len(want), names)
	}
	// The same directory always gives the same layer (the cache relies on it).
	var again bytes.Buffer
	must(writeLayer(&again, dir))
	d1, err := compressLayer(io.Discard, dir)
	must(err)
	d2, err := compressLayer(io.Discard, dir)
	must(err)
	var third bytes.Buffer
	must(writeLayer(&third, dir))
	if !bytes.Equal(again.Bytes(), third.Bytes()) || d1 != d2 {
		t.Error("writeLayer is not deterministic")
	}
}

// A real overlay: deletions in the merged view show up as whiteouts in the upper directory.
func TestOverlayDiff(t *testing.T) {
	base := t.TempDir()
	lower, upper, work, merged := filepath.Join(base, "l"), filepath.Join(base, "u"), filepath.Join(base, "w"), filepath.Join(base, "m")
	for _, d := range []string{lower + "/d/sub", upper, work, merged} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(lower, "keep"), []byte("k"), 0o644)
	os.WriteFile(filepath.Join(lower, "del"), []byte("d"), 0o644)
	os.WriteFile(filepath.Join(lower, "d/sub/x"), []byte("x"), 0o644)
	if err := mountOverlay([]string{lower}, upper, work, merged); err != nil {
		t.Skipf("overlayfs is not available: %v", err)
	}
	os.Remove(filepath.Join(merged, "del"))
	os.RemoveAll(filepath.Join(merged, "d"))
	os.MkdirAll(filepath.Join(merged, "d"), 0o755)
	os.WriteFile(filepath.Join(merged, "d/new"), []byte("n"), 0o644)
	if err := unmount(merged); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := writeLayer(&buf, upper); err != nil {
		t.Fatal(err)
	}
	var names []string
	tr := tar.NewReader(&buf)
	for {
		hdr, err := tr.Next()
		if err != nil {
			break
		}
		names = append(names, hdr.Name)
	}
	sort.Strings(names)
	want := []string{".wh.del", "d/", "d/.wh..wh..opq", "d/new"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("diff = %q, want %q", names, want)
	}
}

// COPY into a rootfs whose symlinks point at the host: everything lands inside the rootfs.
func TestCopierStaysInside(t *testing.T) {
	host := t.TempDir()
	rootfs := t.TempDir()
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644)
	os.MkdirAll(filepath.Join(src, "d/e"), 0o755)
	os.WriteFile(filepath.Join(src, "d/e/g"), []byte("g"), 0o644)
	os.Symlink(host, filepath.Join(rootfs, "abs"))
	os.Symlink(strings.Repeat("../", 10)+strings.TrimPrefix(host, "/"), filepath.Join(rootfs, "rel"))
	os.MkdirAll(filepath.Join(rootfs, "d"), 0o755)
	os.Symlink(host, filepath.Join(rootfs, "d/e"))
	tree := &srcTree{root: src, what: "test"}
	cases := []struct {
		src, dest string
		destDir   bool
		want      string
	}{
		{"f", "/abs/f", false, "f"},
		{"f", "/rel/x/", true, "x/f"},
		{"d", "/d/", true, "g"},
		{"f", "/abs/../../../../f2", false, ""},
	}
	for _, tc := range cases {
		srcs, err := tree.match(tc.src)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newCopier(context.Background(), rootfs)
		if err != nil {
			t.Fatal(err)
		}
		err = c.copy(tree, srcs, tc.dest, tc.destDir, copyOptions{chown: &owner{7, 8}})
		if cerr := c.close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Errorf("copy %s to %s: %v", tc.src, tc.dest, err)
		}
		if tc.want != "" {
			if _, err := os.Stat(filepath.Join(rootfs, host, tc.want)); err != nil {
				t.Errorf("copy %s to %s: not inside the rootfs: %v", tc.src, tc.dest, err)
			}
		}
	}
	if ents, _ := os.ReadDir(host); len(ents) != 0 {
		t.Errorf("the host directory got %d entries", len(ents))
	}
	if _, err := os.Stat(filepath.Join(rootfs, "f2")); err != nil {
		t.Errorf(".. above the symlink's target stays at the root: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(rootfs, host, "x"), &st); err != nil || st.Uid != 7 || st.Gid != 8 {
		t.Errorf("a directory COPY --chown made is owned by %d:%d (%v), want 7:8", st.Uid, st.Gid, err)
	}
}

func TestResolveOwner(t *testing.T) {
	rootfs := t.TempDir()
	os.MkdirAll(filepath.Join(rootfs, "etc"), 0o755)
	os.WriteFile(filepath.Join(rootfs, "etc/passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1234:2345::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(rootfs, "etc/group"), []byte("root:x:0:\nappgrp:x:2345:\nstaff:x:50:\n"), 0o644)
	cases := []struct {
		spec    string
		want    owner
		wantErr string
	}{
		{"app", owner{1234, 2345}, ""},
		{"app:staff", owner{1234, 50}, ""},
		{"1234", owner{1234, 2345}, ""},
		{"4000", owner{4000, 4000}, ""},
		{"4000:51", owner{4000, 51}, ""},
		{"root:appgrp", owner{0, 2345}, ""},
		{"ghost", owner{}, `no user "ghost"`},
		{"app:ghosts", owner{}, `no group "ghosts"`},
		{":1", owner{}, "want USER[:GROUP]"},
	}
	for _, tc := range cases {
		got, err := resolveOwner(rootfs, tc.spec)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.spec, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s = %v, %v; want %v", tc.spec, got, err, tc.want)
		}
	}
}
