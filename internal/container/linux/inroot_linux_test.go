//go:build linux

package linux

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// sameFile reports whether the handle f is the file at path.
func sameFile(t *testing.T, f *os.File, path string) bool {
	t.Helper()
	var a, b unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Lstat(path, &b); err != nil {
		t.Fatal(err)
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

func TestInRootResolvesInsideRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root + "/etc", root + "/a/b", outside + "/etc"} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(root+"/file", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	links := map[string]string{
		"abs":   "/etc",                    // absolute: the root's /etc, not the host's
		"up":    "../../../../../../../..", // climbs no higher than the root
		"rel":   "a/b",
		"magic": "/proc/self/root", // a magic link: refused, never followed to the host
	}
	for name, target := range links {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	rootf, err := os.OpenFile(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rootf.Close()

	for _, tc := range []struct {
		path, want string // want: the host path the handle must be; "" for an error
	}{
		{"/etc", root + "/etc"},
		{"abs", root + "/etc"},
		{"abs/../..", root},
		{"up", root},
		{"up/etc", root + "/etc"},
		{"rel", root + "/a/b"},
		{"/missing", ""},
	} {
		f, err := openInRoot(rootf, tc.path)
		switch {
		case tc.want == "" && err == nil:
			f.Close()
			t.Errorf("openInRoot(%q): no error", tc.path)
		case tc.want == "":
			if !errors.Is(err, os.ErrNotExist) {
				t.Errorf("openInRoot(%q): %v, want a not-exist error", tc.path, err)
			}
		case err != nil:
			t.Errorf("openInRoot(%q): %v", tc.path, err)
		default:
			if !sameFile(t, f, tc.want) {
				t.Errorf("openInRoot(%q) is not %s", tc.path, tc.want)
			}
			f.Close()
		}
	}
	if f, err := openInRoot(rootf, "magic"); err == nil {
		f.Close()
		t.Error("openInRoot followed a /proc magic link")
	}

	// mkdirAllInRoot: an existing directory, one made below a symlink (inside the root), a file in the way.
	for _, tc := range []struct{ path, want string }{
		{"/etc", root + "/etc"},
		{"abs/new/dir", root + "/etc/new/dir"},
		{"/x/y", root + "/x/y"},
	} {
		f, err := mkdirAllInRoot(rootf, tc.path, 0o755)
		if err != nil {
			t.Errorf("mkdirAllInRoot(%q): %v", tc.path, err)
			continue
		}
		if !sameFile(t, f, tc.want) {
			t.Errorf("mkdirAllInRoot(%q) is not %s", tc.path, tc.want)
		}
		f.Close()
	}
	if _, err := os.Stat(outside + "/etc/new"); err == nil {
		t.Error("mkdirAllInRoot created a directory outside the root")
	}
	if f, err := mkdirAllInRoot(rootf, "/file", 0o755); err == nil {
		f.Close()
		t.Error("mkdirAllInRoot returned a regular file as a directory")
	}
}
