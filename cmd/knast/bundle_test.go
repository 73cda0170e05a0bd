package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestParseVolume(t *testing.T) {
	src := t.TempDir()
	tests := []struct {
		in      string
		want    specs.Mount
		wantErr string
	}{
		{in: src + ":/data", want: specs.Mount{Destination: "/data", Type: "bind", Source: src, Options: []string{"rbind", "rw"}}},
		{in: src + ":/data/../x/:ro", want: specs.Mount{Destination: "/x", Type: "bind", Source: src, Options: []string{"rbind", "ro"}}},
		{in: src + ":/d:rw", want: specs.Mount{Destination: "/d", Type: "bind", Source: src, Options: []string{"rbind", "rw"}}},
		{in: src, wantErr: "want SRC:DST[:ro]"},
		{in: src + ":/d:ro:x", wantErr: "want SRC:DST[:ro]"},
		{in: ":/d", wantErr: "want SRC:DST[:ro]"},
		{in: src + ":rel", wantErr: `destination "rel" is not absolute`},
		{in: src + ":/d:z", wantErr: `option "z" is not ro or rw`},
		{in: filepath.Join(src, "missing") + ":/d", wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseVolume(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestClaimBundleDir(t *testing.T) {
	tests := []struct {
		name        string
		prepare     func(dir string) error
		wantCreated bool
		wantErr     string
	}{
		{name: "new", wantCreated: true},
		{name: "empty", prepare: func(d string) error { return os.Mkdir(d, 0o755) }},
		{name: "not empty", prepare: func(d string) error {
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(d, "f"), nil, 0o644)
		}, wantErr: "not empty"},
		{name: "a file", prepare: func(d string) error { return os.WriteFile(d, nil, 0o644) }, wantErr: "not a directory"},
		{name: "a symlink to a directory", prepare: func(d string) error { return os.Symlink(t.TempDir(), d) }, wantErr: "not a directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "b")
			if tt.prepare != nil {
				if err := tt.prepare(dir); err != nil {
					t.Fatal(err)
				}
			}
			created, err := claimBundleDir(dir)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if created != tt.wantCreated {
				t.Errorf("created = %v, want %v", created, tt.wantCreated)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("mode %v (%v), want 0700", fi.Mode(), err)
			}
		})
	}
}

// TestRootfsWritesStayInside plants symlinks where knast creates directories and /etc files; nothing
// may appear outside the rootfs, and the image's /etc/hosts symlink is replaced, not written through.
func TestRootfsWritesStayInside(t *testing.T) {
	outside := t.TempDir()
	rootfs := t.TempDir()
	for _, l := range []struct{ target, link string }{
		{outside, "srv"},
		{filepath.Join(outside, "hosts"), "etc/hosts"},
		{"../../../../" + outside, "vol"},
		{filepath.Join(outside, "hostname"), "etc/hostname"},
	} {
		p := filepath.Join(rootfs, l.link)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(l.target, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "passwd"), []byte("root:x:0:0::/:\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := mkdirsInRoot(rootfs, []string{"/srv/work"}); err == nil {
		t.Error("mkdirsInRoot followed a symlink out of the rootfs")
	}
	if err := mkdirsInRoot(rootfs, []string{"/vol/data"}); err == nil {
		t.Error("mkdirsInRoot followed a relative symlink out of the rootfs")
	}
	if err := mkdirsInRoot(rootfs, []string{"/", "/a/b/../c"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "a", "c")); err != nil || !fi.IsDir() {
		t.Errorf("a/c not created: %v", err)
	}
	if err := writeEtcFiles(rootfs, "box"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(outside); len(entries) != 0 {
		t.Errorf("files appeared outside the rootfs: %v", entries)
	}
	for name, want := range map[string]string{
		"etc/hostname": "box\n",
		"etc/passwd":   "root:x:0:0::/:\n",
	} {
		got, err := os.ReadFile(filepath.Join(rootfs, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q (%v), want %q", name, got, err, want)
		}
	}
	hosts, err := os.Lstat(filepath.Join(rootfs, "etc", "hosts"))
	if err != nil || !hosts.Mode().IsRegular() {
		t.Errorf("etc/hosts is not a regular file now: %v %v", hosts, err)
	}
	if data, _ := os.ReadFile(filepath.Join(rootfs, "etc", "hosts")); !strings.Contains(string(data), "127.0.1.1\tbox\n") {
		t.Errorf("etc/hosts does not name the host: %q", data)
	}
}
