package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestBusyboxRootfs(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: busybox-static not installed: %v", err)
	}
	dir := t.TempDir()
	if err := BusyboxRootfs(dir); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path string
		want os.FileMode // type bits that must be set; 0 means regular file
	}{
		{"bin/busybox", 0},
		{"bin/sh", os.ModeSymlink},
		{"bin/ls", os.ModeSymlink},
		{"proc", os.ModeDir},
		{"sys", os.ModeDir},
		{"dev", os.ModeDir},
		{"tmp", os.ModeDir | os.ModeSticky},
		{"root", os.ModeDir},
		{"etc/passwd", 0},
		{"etc/group", 0},
	} {
		fi, err := os.Lstat(filepath.Join(dir, tc.path))
		if err != nil {
			t.Errorf("%s: %v", tc.path, err)
			continue
		}
		if got := fi.Mode() & (os.ModeType | os.ModeSticky); got != tc.want {
			t.Errorf("%s: mode type %v, want %v", tc.path, got, tc.want)
		}
	}
	passwd, err := os.ReadFile(filepath.Join(dir, "etc/passwd"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(passwd), ":1000:1000:") {
		t.Errorf("etc/passwd lacks user 1000: %q", passwd)
	}
	// The rootfs must really work: run an applet through its symlink under chroot.
	out, err := exec.Command("chroot", dir, "/bin/sh", "-c", "echo ok").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("chroot sh: %v: %q", err, out)
	}
}

func TestBundleAppliesEdit(t *testing.T) {
	if _, err := os.Stat(BusyboxPath); err != nil {
		t.Skipf("skipping: busybox-static not installed: %v", err)
	}
	// A stand-in for `knast spec` that writes a minimal config into its working directory.
	fake := filepath.Join(t.TempDir(), "fake-knast")
	script := "#!/bin/sh\n[ \"$1\" = spec ] || exit 2\n" +
		`echo '{"ociVersion":"1.3.0","process":{"args":["sh"],"cwd":"/"},"root":{"path":"rootfs"}}' > config.json` + "\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := Bundle(t, fake, func(s *specs.Spec) { s.Hostname = "edited" })
	s, err := ReadSpec(b)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "edited" || s.Root == nil || s.Root.Path != "rootfs" {
		t.Errorf("spec = %+v, want hostname edited and root rootfs", s)
	}
	if _, err := os.Stat(filepath.Join(b, "rootfs/bin/busybox")); err != nil {
		t.Errorf("rootfs: %v", err)
	}
}

func TestMountsUnderAndLeaks(t *testing.T) {
	RequireRoot(t)
	base := t.TempDir()
	root := filepath.Join(base, "root")
	mnt := filepath.Join(base, "mnt")
	for _, d := range []string{root, mnt} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sc := Scope{Root: root, Paths: []string{base}, Token: "KNAST_TESTUTIL_TOKEN=" + t.Name()}
	before, err := TakeSnapshot(sc)
	if err != nil {
		t.Fatal(err)
	}
	if got := before.Leaks(before); len(got) != 0 {
		t.Fatalf("snapshot leaks against itself: %v", got)
	}

	if err := unix.Mount("tmpfs", mnt, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, unix.MNT_DETACH) })
	if err := os.WriteFile(filepath.Join(root, "knast.db"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(root, "c1"), 0o700); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	cmd.Env = append(os.Environ(), sc.Token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	mounts, err := MountsUnder(base)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(mounts, mnt) {
		t.Errorf("MountsUnder(%s) = %v, want %s", base, mounts, mnt)
	}
	after, err := TakeSnapshot(sc)
	if err != nil {
		t.Fatal(err)
	}
	leaks := before.Leaks(after)
	for _, want := range []string{"mount: " + mnt, "state entry: c1", "process: pid"} {
		if !slices.ContainsFunc(leaks, func(l string) bool { return strings.HasPrefix(l, want) }) {
			t.Errorf("leaks %q lack %q", leaks, want)
		}
	}
	if slices.ContainsFunc(leaks, func(l string) bool { return strings.Contains(l, "knast.db") }) {
		t.Errorf("leaks %q report the database", leaks)
	}

	// Cleaning everything up clears the leaks.
	cmd.Process.Kill()
	cmd.Wait()
	if err := unix.Unmount(mnt, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "c1")); err != nil {
		t.Fatal(err)
	}
	if got := before.WaitLeaks(2 * time.Second); len(got) != 0 {
		t.Errorf("after cleanup: leaks %v", got)
	}
}
