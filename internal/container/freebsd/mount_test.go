package freebsd

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestMountFor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		m         specs.Mount
		linuxABI  bool
		wantFlags int
		want      []string // the nmount parameters, rendered
		wantErr   string
	}{
		{
			name:      "read-only bind is nullfs with ro",
			m:         specs.Mount{Destination: "/data", Type: "bind", Source: "/srv/data", Options: []string{"rbind", "ro", "nosuid", "nodev"}},
			wantFlags: MntRdonly | MntNosuid,
			want:      []string{"fstype=nullfs", "fspath=/r/data", "target=/srv/data", "ro"},
		},
		{
			name: "bind option on type none",
			m:    specs.Mount{Destination: "/data", Type: "none", Source: "/srv/data/", Options: []string{"bind", "rw"}},
			want: []string{"fstype=nullfs", "fspath=/r/data", "target=/srv/data"},
		},
		{
			name:    "relative nullfs source",
			m:       specs.Mount{Destination: "/data", Type: "nullfs", Source: "data"},
			wantErr: "absolute host path",
		},
		{
			name: "devfs gets the default ruleset",
			m:    specs.Mount{Destination: "/dev", Type: "devfs", Source: "devfs"},
			want: []string{"fstype=devfs", "fspath=/r/dev", "ruleset=4"},
		},
		{
			name: "devfs keeps its own ruleset",
			m:    specs.Mount{Destination: "/dev", Type: "devfs", Source: "devfs", Options: []string{"ruleset=5"}},
			want: []string{"fstype=devfs", "fspath=/r/dev", "ruleset=5"},
		},
		{
			name:      "tmpfs options pass through",
			m:         specs.Mount{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "mode=1777", "size=64m"}},
			wantFlags: MntNosuid | MntNoexec,
			want:      []string{"fstype=tmpfs", "fspath=/r/tmp", "mode=1777", "size=64m"},
		},
		{
			name: "fdescfs with linrdlnk",
			m:    specs.Mount{Destination: "/dev/fd", Type: "fdescfs", Source: "fdesc", Options: []string{"linrdlnk"}},
			want: []string{"fstype=fdescfs", "fspath=/r/dev/fd", "linrdlnk"},
		},
		{
			name: "proc in a FreeBSD jail is procfs",
			m:    specs.Mount{Destination: "/proc", Type: "proc", Source: "proc"},
			want: []string{"fstype=procfs", "fspath=/r/proc"},
		},
		{
			name:     "proc in a Linux jail is linprocfs",
			m:        specs.Mount{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			linuxABI: true, wantFlags: MntNosuid | MntNoexec,
			want: []string{"fstype=linprocfs", "fspath=/r/proc"},
		},
		{
			name:     "sysfs in a Linux jail is linsysfs",
			m:        specs.Mount{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"ro"}},
			linuxABI: true, wantFlags: MntRdonly,
			want: []string{"fstype=linsysfs", "fspath=/r/sys", "ro"},
		},
		{
			name:    "sysfs in a FreeBSD jail",
			m:       specs.Mount{Destination: "/sys", Type: "sysfs"},
			wantErr: "Linux-ABI",
		},
		{
			name:    "devpts is Linux-only",
			m:       specs.Mount{Destination: "/dev/pts", Type: "devpts"},
			wantErr: "only on Linux",
		},
		{
			name:    "no type",
			m:       specs.Mount{Destination: "/x"},
			wantErr: "type: must be set",
		},
		{
			name:      "other file systems go to the kernel with their source",
			m:         specs.Mount{Destination: "/data", Type: "zfs", Source: "tank/data", Options: []string{"noatime"}},
			wantFlags: MntNoatime,
			want:      []string{"fstype=zfs", "fspath=/r/data", "from=tank/data"},
		},
		{
			name:    "NUL in an option",
			m:       specs.Mount{Destination: "/tmp", Type: "tmpfs", Options: []string{"size=1\x00"}},
			wantErr: "NUL",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dest := "/r" + tc.m.Destination
			m, err := MountFor(tc.m, dest, tc.linuxABI, DefaultDevfsRuleset)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.Flags != tc.wantFlags {
				t.Errorf("flags = %#x, want %#x", m.Flags, tc.wantFlags)
			}
			if got := render(m.Params()); !slices.Equal(got, tc.want) {
				t.Errorf("params:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestMountsStayInRoot(t *testing.T) {
	root := t.TempDir()
	// An image may point a mount destination anywhere with a symlink: it must resolve inside the root.
	if err := os.Symlink("/etc", filepath.Join(root, "evil")); err != nil {
		t.Fatal(err)
	}
	s := &specs.Spec{
		Annotations: map[string]string{AnnotationDevfsRuleset: "6"},
		Mounts: []specs.Mount{
			{Destination: "/dev", Type: "devfs"},
			{Destination: "/evil/x", Type: "tmpfs"},
			{Destination: "/../../up", Type: "tmpfs"},
		},
	}
	ms, err := Mounts(root, root, s)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "dev"), filepath.Join(root, "etc/x"), filepath.Join(root, "up")}
	for i, m := range ms {
		if m.Path != want[i] || m.Point != want[i] {
			t.Errorf("mount %d at %s (point %s), want %s", i, m.Path, m.Point, want[i])
		}
	}
	// With a read-only root the mount points are made in the rootfs and mounted on in the view.
	view := filepath.Join(t.TempDir(), "root")
	ms, err = Mounts(root, view, s)
	if err != nil {
		t.Fatal(err)
	}
	if ms[1].Point != filepath.Join(root, "etc/x") || ms[1].Path != filepath.Join(view, "etc/x") {
		t.Errorf("read-only root: point %s path %s", ms[1].Point, ms[1].Path)
	}
	if got := render(RootView(root+"/", view).Params()); !slices.Equal(got, []string{"fstype=nullfs", "fspath=" + view, "target=" + root, "ro"}) {
		t.Errorf("root view params %q", got)
	}
	if got := render(ms[0].Params()); !slices.Contains(got, "ruleset=6") {
		t.Errorf("devfs params %q lack the annotated ruleset", got)
	}
	if _, err := Mounts(root, root, &specs.Spec{Mounts: []specs.Mount{{Destination: "rel", Type: "tmpfs"}}}); err == nil {
		t.Error("a relative destination was accepted")
	}
}

func TestUnmountOrder(t *testing.T) {
	mounted := []string{"/", "/dev", "/j/r", "/j/r/dev", "/j/r/dev/fd", "/j/rootfs2/proc", "/j/r/proc", "/j/r2"}
	got := UnmountOrder("/j/r/", mounted, false)
	want := []string{"/j/r/proc", "/j/r/dev/fd", "/j/r/dev"}
	if !slices.Equal(got, want) {
		t.Errorf("UnmountOrder = %q, want %q (below the root only, last first, the root itself kept)", got, want)
	}
	got = UnmountOrder("/j/r", mounted, true)
	if want = append(want, "/j/r"); !slices.Equal(got, want) {
		t.Errorf("UnmountOrder(self) = %q, want %q", got, want)
	}
}

func TestNested(t *testing.T) {
	ms := []Mount{{Path: "/r/dev"}, {Path: "/r/dev/shm"}, {Path: "/r/devices"}, {Path: "/r/proc"}, {Path: "/r/dev/fd"}}
	if got, want := Nested(ms), []bool{false, true, false, false, true}; !slices.Equal(got, want) {
		t.Errorf("Nested = %v, want %v", got, want)
	}
}
