//go:build linux

package images

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/testutil"
)

// appImage is busybox-static plus a layer that adds the user app (uid 1234, primary group 2345, member
// of 3456), with a config that reports what the container sees.
func appImage(t *testing.T) v1.Image {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base")
	if err := testutil.BusyboxRootfs(base); err != nil {
		t.Fatal(err)
	}
	top := filepath.Join(t.TempDir(), "top")
	for name, data := range map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1234:2345:app:/home/app:/bin/sh\n",
		"etc/group":  "root:x:0:\napp:x:2345:\nextra:x:3456:other,app\n",
	} {
		p := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	home := filepath.Join(top, "home", "app")
	if err := os.MkdirAll(home, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(home, 1234, 2345); err != nil {
		t.Fatal(err)
	}
	return ociImage(t, v1.Config{
		Entrypoint: []string{"/bin/sh", "-c"},
		Cmd:        []string{`echo "cmd=$GREETING"; pwd; id -u; id -g; id -G; echo "home=$HOME"; hostname; cat /etc/hostname; echo "path=$PATH"`},
		Env:        []string{"GREETING=hello from the image", "PATH=/bin"},
		WorkingDir: "/srv/work",
		User:       "app",
		StopSignal: "SIGUSR1",
		Labels:     map[string]string{"org.example.role": "test"},
	}, dirLayer(t, base), dirLayer(t, top))
}

// TestBundleFromRegistry pushes an image to a local registry, makes a bundle of it with `knast bundle`
// (a pull into an empty store), runs the bundle, and makes a second bundle from the store alone.
func TestBundleFromRegistry(t *testing.T) {
	w := newRegWorld(t)
	requireBundleVerbs(w, false)
	addr := w.startRegistry("", "")
	ref := addr + "/knast/app:1"
	digest := pushImage(t, ref, appImage(t))

	dir := filepath.Join(t.TempDir(), "bundle")
	r := w.knast("bundle", "--tls-verify=false", ref, dir)
	if r.code != 0 {
		t.Fatalf("%s", r)
	}
	if got := strings.TrimSpace(r.stdout); got != dir {
		t.Errorf("bundle printed %q, want the bundle path %q", got, dir)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("bundle dir: %v, mode %v; want 0700 (the rootfs holds setuid binaries)", err, fi.Mode())
	}
	if _, err := os.Stat(filepath.Join(dir, "rootfs", "bin", "busybox")); err != nil {
		t.Errorf("rootfs lacks the base layer: %v", err)
	}
	s, err := testutil.ReadSpec(dir)
	if err != nil {
		t.Fatal(err)
	}
	wantUser := specs.User{UID: 1234, GID: 2345, AdditionalGids: []uint32{3456}}
	if diff := cmp.Diff(wantUser, s.Process.User); diff != "" {
		t.Errorf("process.user (-want +got):\n%s", diff)
	}
	for k, v := range map[string]string{
		"io.containerd.image.name":            ref,
		"io.github.knast.image.digest":        digest,
		"org.opencontainers.image.stopSignal": "SIGUSR1",
		"org.example.role":                    "test",
	} {
		if s.Annotations[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, s.Annotations[k], v)
		}
	}

	want := strings.Join([]string{
		"cmd=hello from the image", "/srv/work", "1234", "2345", "2345 3456", "home=/home/app",
		"knast", "knast", "path=/bin",
	}, "\n") + "\n"
	run := w.knast("run", "--bundle", dir, "bundle-run")
	if run.code != 0 {
		t.Fatalf("%s", run)
	}
	if run.stdout != want {
		t.Errorf("container output:\n%s\nwant:\n%s", run.stdout, want)
	}

	// The image is in the store now: a second bundle needs no registry.
	deleteImage(t, ref, digest)
	if r := w.knastIn(filepath.Join(t.TempDir(), "empty-store"), "bundle", "--tls-verify=false", ref, filepath.Join(t.TempDir(), "b")); r.code == 0 {
		t.Fatalf("the registry still serves the deleted image: %s", r)
	}
	dir2 := filepath.Join(t.TempDir(), "again")
	if r := w.knast("bundle", ref, dir2); r.code != 0 {
		t.Fatalf("bundle from the store: %s", r)
	}
	t.Cleanup(func() { w.cleanupBundle(dir2) })
	cfg1, _ := os.ReadFile(filepath.Join(dir, "config.json"))
	cfg2, _ := os.ReadFile(filepath.Join(dir2, "config.json"))
	if string(cfg1) != string(cfg2) {
		t.Errorf("the second bundle's config differs:\n%s\n---\n%s", cfg1, cfg2)
	}
	if r := w.knast("list", "-q"); strings.TrimSpace(r.stdout) != "" {
		t.Errorf("containers left: %s", r.stdout)
	}
}

// TestBundleRefusals: a non-empty directory is refused untouched; a failed bundle removes what it made
// (a directory it created, or the contents of an empty one it was given).
func TestBundleRefusals(t *testing.T) {
	w := newRegWorld(t)
	requireBundleVerbs(w, false)
	addr := w.startRegistry("", "")
	ref := addr + "/knast/app:1"
	pushImage(t, ref, appImage(t))

	tests := []struct {
		name     string
		prepare  func(dir string) // nil: dir does not exist
		noParent bool             // dir's parent does not exist either
		ref      string
		wantErr  string
		after    func(t *testing.T, dir string)
	}{
		{
			name: "non-empty directory",
			prepare: func(dir string) {
				os.Mkdir(dir, 0o755)
				os.WriteFile(filepath.Join(dir, "keep"), []byte("mine"), 0o644)
			},
			ref:     ref,
			wantErr: "not empty",
			after: func(t *testing.T, dir string) {
				entries, _ := os.ReadDir(dir)
				if len(entries) != 1 || entries[0].Name() != "keep" {
					t.Errorf("the directory was changed: %v", entries)
				}
			},
		},
		{
			name:    "unknown image, new directory",
			ref:     addr + "/knast/missing:1",
			wantErr: "missing",
			after: func(t *testing.T, dir string) {
				if _, err := os.Lstat(dir); !os.IsNotExist(err) {
					t.Errorf("the directory knast created is still there: %v", err)
				}
			},
		},
		{
			name:    "unknown image, empty directory",
			prepare: func(dir string) { os.Mkdir(dir, 0o755) },
			ref:     addr + "/knast/missing:1",
			wantErr: "missing",
			after: func(t *testing.T, dir string) {
				entries, err := os.ReadDir(dir)
				if err != nil || len(entries) != 0 {
					t.Errorf("the given directory should be left empty: %v %v", entries, err)
				}
			},
		},
		{
			name:     "parent missing",
			noParent: true,
			ref:      ref,
			wantErr:  "parent directory does not exist",
			after:    func(t *testing.T, dir string) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "bundle")
			if tt.noParent {
				dir = filepath.Join(t.TempDir(), "no", "bundle")
			}
			if tt.prepare != nil {
				tt.prepare(dir)
			}
			r := w.knast("bundle", "--tls-verify=false", tt.ref, dir)
			if r.code == 0 {
				t.Fatalf("bundle succeeded: %s", r)
			}
			if !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.wantErr)
			}
			tt.after(t, dir)
		})
	}
}

// TestRunImage runs the image through `knast run --image`: the bundle under --storage/bundles/ID, the
// overrides, the exit status, and --rm.
func TestRunImage(t *testing.T) {
	w := newRegWorld(t)
	requireBundleVerbs(w, true)
	addr := w.startRegistry("", "")
	ref := addr + "/knast/app:1"
	pushImage(t, ref, appImage(t))
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "note"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		id       string
		args     []string // after run --image REF --tls-verify=false --name ID
		want     string
		code     int
		rm       bool // the bundle must be gone afterwards
		wantErr  string
		noBundle bool // the command fails before a bundle exists
	}{
		{
			name: "image defaults, removed with --rm",
			id:   "run-defaults",
			args: []string{"--rm"},
			want: "cmd=hello from the image\n/srv/work\n1234\n2345\n2345 3456\nhome=/home/app\nrun-defaults\nrun-defaults\npath=/bin\n",
			rm:   true,
		},
		{
			name: "overrides and a command",
			id:   "run-overrides",
			args: []string{"--rm", "-e", "GREETING=changed", "-e", "EXTRA=1", "-w", "/tmp", "-u", "0:0", "--",
				`echo "$GREETING $EXTRA"; pwd; id -u; id -G; echo "home=$HOME"`},
			want: "changed 1\n/tmp\n0\n0\nhome=/root\n",
			rm:   true,
		},
		{
			name: "a read-only volume",
			id:   "run-volume",
			args: []string{"--rm", "-v", hostDir + ":/mnt/host:ro", "--", "cat /mnt/host/note; touch /mnt/host/x 2>/dev/null || echo read-only"},
			want: "from the host\nread-only\n",
			rm:   true,
		},
		{
			name: "exit status, bundle kept without --rm",
			id:   "run-exit",
			args: []string{"--", "exit 7"},
			code: 7,
		},
		{
			name:     "unknown user",
			id:       "run-baduser",
			args:     []string{"--rm", "-u", "nobody", "--", "true"},
			code:     1,
			wantErr:  `user: user "nobody" not found in /etc/passwd`,
			noBundle: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := tt.id
			args := append([]string{"run", "--image", ref, "--tls-verify=false", "--name", id}, tt.args...)
			r := w.knast(args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tt.code, r)
			}
			if tt.wantErr != "" && !strings.Contains(r.stderr, tt.wantErr) {
				t.Errorf("stderr %q does not contain %q", r.stderr, tt.wantErr)
			}
			if tt.code == 0 && r.stdout != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", r.stdout, tt.want)
			}
			_, err := os.Stat(filepath.Join(w.storage, "bundles", id, "config.json"))
			if gone := os.IsNotExist(err); gone != (tt.rm || tt.noBundle) {
				t.Errorf("bundle of %s: stat error %v; want it removed: %v", id, err, tt.rm || tt.noBundle)
			}
			if r := w.knast("list", "-q"); strings.TrimSpace(r.stdout) != "" {
				t.Errorf("containers left: %s", r.stdout)
			}
		})
	}

	if r := w.knast("run", "--rm", "x"); r.code == 0 || !strings.Contains(r.stderr, "--rm needs --image") {
		t.Errorf("run --rm without --image: %s", r)
	}
}
