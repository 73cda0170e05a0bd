//go:build linux

package integration

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

const erofs = "Read-only file system"

// hostDir makes a host directory holding file "data" (content "hello") for bind mounts.
func hostDir(t *testing.T) string {
	t.Helper()
	d := filepath.Join(t.TempDir(), "src")
	if err := os.Mkdir(d, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(d, "data"), []byte("hello\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestMounts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		script string
		setup  func(t *testing.T, s *specs.Spec)
		check  func(t *testing.T, out, bundle string)
	}{
		{
			name:   "tmpfs",
			script: `awk '$2=="/mnt/t"{print $3, $4}' /proc/self/mounts; echo x > /mnt/t/file && cat /mnt/t/file`,
			setup: func(t *testing.T, s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/t", Type: "tmpfs", Source: "tmpfs",
					Options: []string{"nosuid", "size=1m", "mode=700"}})
			},
			check: func(t *testing.T, out, b string) {
				lines := strings.Split(out, "\n")
				if len(lines) != 2 || !strings.HasPrefix(lines[0], "tmpfs ") ||
					!strings.Contains(lines[0], "size=1024k") || !strings.Contains(lines[0], "mode=700") ||
					!strings.Contains(lines[0], "nosuid") || lines[1] != "x" {
					t.Errorf("inside: %q, want a 1m mode 700 nosuid tmpfs that is writable", out)
				}
				if _, err := os.Stat(rootfsPath(b, "mnt/t/file")); err == nil {
					t.Errorf("file written on the tmpfs reached the rootfs")
				}
			},
		},
		{
			name:   "bind-ro",
			script: `cat /mnt/ro/data; touch /mnt/ro/new 2>&1; echo end`,
			setup: func(t *testing.T, s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/ro", Type: "bind", Source: hostDir(t),
					Options: []string{"bind", "ro"}})
			},
			check: func(t *testing.T, out, _ string) {
				if !strings.HasPrefix(out, "hello\n") || !strings.Contains(out, erofs) || !strings.HasSuffix(out, "end") {
					t.Errorf("inside: %q, want the file readable and a write failing with EROFS", out)
				}
			},
		},
		{
			name:   "bind-rw",
			script: `echo written > /mnt/rw/new && cat /mnt/rw/data`,
			setup: func(t *testing.T, s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/rw", Type: "bind", Source: hostDir(t),
					Options: []string{"rbind", "rw"}})
			},
			check: func(t *testing.T, out, _ string) {
				if out != "hello" {
					t.Errorf("inside: %q, want hello", out)
				}
			},
		},
		{
			name:   "rro-recursive",
			script: `cat /mnt/rro/sub/subdata; touch /mnt/rro/new 2>&1; touch /mnt/rro/sub/new 2>&1; echo end`,
			setup: func(t *testing.T, s *specs.Spec) {
				src := hostDir(t)
				sub := filepath.Join(src, "sub")
				if err := os.Mkdir(sub, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "size=1m"); err != nil {
					t.Fatalf("mount a host submount: %v", err)
				}
				t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
				if err := os.WriteFile(filepath.Join(sub, "subdata"), []byte("sub\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/rro", Type: "bind", Source: src,
					Options: []string{"rbind", "rro"}})
			},
			check: func(t *testing.T, out, _ string) {
				lines := strings.Split(out, "\n")
				if len(lines) != 4 || lines[0] != "sub" || !strings.Contains(lines[1], erofs) ||
					!strings.Contains(lines[2], erofs) || lines[3] != "end" {
					t.Errorf("inside: %q, want the submount visible and both levels read-only", out)
				}
			},
		},
		{
			name:   "symlink-target-stays-inside",
			script: `awk '$2=="/etc"{print $3}' /proc/self/mounts; ls /etc | wc -l; echo x > /mnt/inside && cat /etc/inside`,
			setup: func(t *testing.T, s *specs.Spec) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt", Type: "tmpfs", Source: "tmpfs"})
			},
			check: func(t *testing.T, out, _ string) {
				if fields(out) != "tmpfs 0 x" {
					t.Errorf("inside: %q, want the tmpfs on the rootfs's /etc (the symlink resolved in the rootfs)", out)
				}
			},
		},
		{
			name:   "masked-paths",
			script: `cat /etc/secret | wc -c; ls -A /etc/secretdir | wc -l; cat /proc/timer_list | wc -c; (echo x > /etc/secretdir/f) 2>&1; echo end`,
			setup: func(t *testing.T, s *specs.Spec) {
				// A procfs file every kernel has (this one lacks /proc/kcore), masked as runc masks kcore.
				if _, err := os.Stat("/proc/timer_list"); err != nil {
					t.Skipf("skipping: kernel without /proc/timer_list: %v", err)
				}
				s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/etc/secret", "/etc/secretdir")
				if !slices.Contains(s.Linux.MaskedPaths, "/proc/timer_list") {
					s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/proc/timer_list")
				}
			},
			check: func(t *testing.T, out, _ string) {
				lines := strings.Split(out, "\n")
				if len(lines) != 5 || fields(lines[0]) != "0" || fields(lines[1]) != "0" || fields(lines[2]) != "0" ||
					!strings.Contains(lines[3], erofs) {
					t.Errorf("inside: %q, want masked file, dir and /proc/timer_list empty and the dir read-only", out)
				}
			},
		},
		{
			name:   "readonly-paths",
			script: `cat /data/data; touch /data/new 2>&1; (echo x > /proc/sys/kernel/domainname) 2>&1; echo end`,
			setup: func(t *testing.T, s *specs.Spec) {
				s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/data")
				if !slices.Contains(s.Linux.ReadonlyPaths, "/proc/sys") {
					s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/proc/sys")
				}
			},
			check: func(t *testing.T, out, _ string) {
				lines := strings.Split(out, "\n")
				if len(lines) != 4 || lines[0] != "in-rootfs" || !strings.Contains(lines[1], erofs) ||
					!strings.Contains(lines[2], erofs) {
					t.Errorf("inside: %q, want /data readable but not writable, /proc/sys read-only", out)
				}
			},
		},
		{
			name:   "root-readonly",
			script: `touch /new 2>&1; touch /tmp/new 2>&1; touch /dev/shm/new && echo dev-writable`,
			setup:  func(t *testing.T, s *specs.Spec) { s.Root.Readonly = true },
			check: func(t *testing.T, out, b string) {
				lines := strings.Split(out, "\n")
				if len(lines) != 3 || !strings.Contains(lines[0], erofs) || !strings.Contains(lines[1], erofs) ||
					lines[2] != "dev-writable" {
					t.Errorf("inside: %q, want / and /tmp read-only, /dev/shm writable", out)
				}
				if _, err := os.Stat(rootfsPath(b, "new")); err == nil {
					t.Errorf("write to a read-only root reached the rootfs")
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			hostEtc, err := testutil.MountsUnder("/etc")
			if err != nil {
				t.Fatal(err)
			}
			b := e.bundle(tc.script, func(s *specs.Spec) { tc.setup(t, s) })
			prepareRootfs(t, b, tc.name)
			r := e.knast("run", "--bundle", b, "ctr")
			if r.Code != 0 {
				t.Errorf("%s", r)
			}
			tc.check(t, strings.TrimSpace(r.Stdout), b)
			if now, _ := testutil.MountsUnder("/etc"); !slices.Equal(now, hostEtc) {
				t.Errorf("host mounts under /etc changed: %v -> %v", hostEtc, now)
			}
		})
	}
}

// prepareRootfs adds the rootfs content some mount cases rely on.
func prepareRootfs(t *testing.T, b, name string) {
	t.Helper()
	var err error
	switch name {
	case "symlink-target-stays-inside":
		err = os.Symlink("/etc", rootfsPath(b, "mnt"))
	case "masked-paths":
		if err = os.WriteFile(rootfsPath(b, "etc/secret"), []byte("secret\n"), 0o644); err == nil {
			if err = os.Mkdir(rootfsPath(b, "etc/secretdir"), 0o755); err == nil {
				err = os.WriteFile(rootfsPath(b, "etc/secretdir/file"), []byte("secret\n"), 0o644)
			}
		}
	case "readonly-paths":
		if err = os.Mkdir(rootfsPath(b, "data"), 0o755); err == nil {
			err = os.WriteFile(rootfsPath(b, "data/data"), []byte("in-rootfs\n"), 0o644)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
}

func TestDev(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	script := strings.Join([]string{
		`for d in null zero full random urandom tty knastnull; do stat -c "$d %F %t:%T %a" /dev/$d; done`,
		`for l in fd stdin stdout stderr; do readlink /dev/$l; done`,
		`test -c /dev/ptmx -o -L /dev/ptmx && echo ptmx`,
		`echo x > /dev/null && echo null-ok`,
		`head -c 3 /dev/zero | wc -c`,
		`head -c 8 /dev/urandom | wc -c`,
		`(echo x > /dev/full) 2>&1`,
		`echo x > /dev/knastnull && echo knastnull-ok`,
	}, "; ")
	b := e.bundle(script, func(s *specs.Spec) {
		mode := os.FileMode(0o640)
		uid, gid := uint32(0), uint32(0)
		s.Linux.Devices = append(s.Linux.Devices, specs.LinuxDevice{Path: "/dev/knastnull", Type: "c",
			Major: 1, Minor: 3, FileMode: &mode, UID: &uid, GID: &gid})
		major, minor := int64(1), int64(3)
		if s.Linux.Resources == nil {
			s.Linux.Resources = &specs.LinuxResources{}
		}
		s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{Allow: true,
			Type: "c", Major: &major, Minor: &minor, Access: "rwm"})
	})
	out := e.mustRun("ctr", b)
	want := []string{
		"null character special file 1:3 666",
		"zero character special file 1:5 666",
		"full character special file 1:7 666",
		"random character special file 1:8 666",
		"urandom character special file 1:9 666",
		"tty character special file 5:0 666",
		"knastnull character special file 1:3 640",
		"/proc/self/fd",
		"/proc/self/fd/0",
		"/proc/self/fd/1",
		"/proc/self/fd/2",
		"ptmx",
		"null-ok",
		"3",
		"8",
		"No space left on device",
		"knastnull-ok",
	}
	lines := strings.Split(out, "\n")
	if len(lines) != len(want) {
		t.Fatalf("inside: %q, want %d lines", out, len(want))
	}
	for i, w := range want {
		if !strings.Contains(fields(lines[i]), w) {
			t.Errorf("line %d: %q, want %q", i, lines[i], w)
		}
	}
}
