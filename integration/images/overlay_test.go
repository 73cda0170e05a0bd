//go:build linux

package images

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

// tarEntry is one entry of a hand-made layer.
type tarEntry struct {
	name, data, link string
	typ              byte
	mode             int64
	uid              int
}

func tarLayer(t *testing.T, ents ...tarEntry) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.uid, Linkname: e.link, ModTime: time.Unix(1700000000, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
			if h.Typeflag == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		tw.Write([]byte(e.data))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// changesImage is busybox-static with two layers of changes: whiteouts of a file and a directory, an
// opaque directory, a file recreated after its whiteout, a hardlink to a lower file, a parent that
// is only implied (its mode comes from below) and a setuid file.
func changesImage(t *testing.T) v1.Image {
	t.Helper()
	base := filepath.Join(t.TempDir(), "base")
	if err := testutil.BusyboxRootfs(base); err != nil {
		t.Fatal(err)
	}
	d := byte(tar.TypeDir)
	mid := tarLayer(t,
		tarEntry{name: "srv/", typ: d}, tarEntry{name: "srv/a", data: "a1"}, tarEntry{name: "srv/gone", data: "g"},
		tarEntry{name: "srv/dir/", typ: d}, tarEntry{name: "srv/dir/x", data: "x"},
		tarEntry{name: "srv/opq/", typ: d}, tarEntry{name: "srv/opq/old", data: "o"},
		tarEntry{name: "srv/shared/", typ: d, mode: 0o1777},
		tarEntry{name: "srv/orig", data: "linked", mode: 0o4755, uid: 7},
	)
	top := tarLayer(t,
		tarEntry{name: "srv/.wh.gone"}, tarEntry{name: "srv/.wh.dir"}, tarEntry{name: "srv/.wh.a"},
		tarEntry{name: "srv/a", data: "a2"},
		tarEntry{name: "srv/opq/", typ: d}, tarEntry{name: "srv/opq/.wh..wh..opq"}, tarEntry{name: "srv/opq/new", data: "n"},
		tarEntry{name: "srv/shared/f", data: "implied parent"},
		tarEntry{name: "srv/link", typ: tar.TypeLink, link: "srv/orig"},
	)
	return ociImage(t, v1.Config{Cmd: []string{"/bin/sh", "-c", "cat /srv/a; ls /srv/opq"}}, dirLayer(t, base), mid, top)
}

// treeOf describes every path under root by type, mode, owner, content or link target, and (for
// non-directories) mtime. skip names paths (relative) left out.
func treeOf(t *testing.T, root string, skip ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		for _, s := range skip {
			if rel == s {
				if de.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("%o %d:%d", st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x mtime=%d", sha256.Sum256(b), st.Mtim.Sec)
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" dev=%d", st.Rdev)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isMounted(t *testing.T, p string) bool {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(p))
	if err != nil {
		t.Fatal(err)
	}
	return len(ms) > 0
}

// cleanupBundle removes a bundle at the end of a test (whose context is already cancelled then), so
// no mount outlives it.
func (w *regWorld) cleanupBundle(dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	cmd := exec.Command(w.bin, "--root", filepath.Join(w.dir, "root"), "--storage", w.storage, "bundle", "--rm", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Errorf("bundle --rm %s: %v\n%s", dir, err, out)
	}
}

func requireOverlayFS(t *testing.T) {
	t.Helper()
	b, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(b), "\toverlay\n") {
		t.Skip("the kernel has no overlayfs (modprobe overlay)")
	}
}

// TestOverlayBundle: `knast bundle` mounts an overlay of the layer cache whose tree is that of
// `--copy` and of `umoci unpack`; `bundle --rm`, a container's delete (also forced, of a created
// container) and `run --image --rm` leave no mount and no upper dir; image rm keeps layers a mounted
// bundle uses and prune removes them once unused.
func TestOverlayBundle(t *testing.T) {
	requireOverlayFS(t)
	w := newRegWorld(t)
	requireBundleVerbs(w, true)
	addr := w.startRegistry("", "")
	ref := addr + "/knast/changes:1"
	pushImage(t, ref, changesImage(t))

	over := filepath.Join(t.TempDir(), "over")
	w.must(w.knast("bundle", "--tls-verify=false", ref, over))
	t.Cleanup(func() { w.cleanupBundle(over) })
	if !isMounted(t, filepath.Join(over, "rootfs")) {
		t.Fatal("the overlay bundle's rootfs is not a mount")
	}
	s, err := testutil.ReadSpec(over)
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations["org.knast.bundle.overlay"] != ".knast-overlay" {
		t.Errorf("annotations %v lack org.knast.bundle.overlay", s.Annotations)
	}
	copied := filepath.Join(t.TempDir(), "copy")
	w.must(w.knast("bundle", "--copy", ref, copied))
	if isMounted(t, copied) {
		t.Error("--copy mounted something")
	}
	umoci := filepath.Join(t.TempDir(), "umoci")
	w.must(w.run("umoci", "unpack", "--image", filepath.Join(w.storage, "oci")+":"+ref, umoci))

	// knast writes /etc/hosts and /etc/hostname (umoci does not), at the time of each bundle.
	overTree := treeOf(t, filepath.Join(over, "rootfs"), "etc/hosts", "etc/hostname")
	if diff := cmp.Diff(treeOf(t, filepath.Join(copied, "rootfs"), "etc/hosts", "etc/hostname"), overTree); diff != "" {
		t.Errorf("overlay differs from --copy (-copy +overlay):\n%s", diff)
	}
	if diff := cmp.Diff(treeOf(t, filepath.Join(umoci, "rootfs"), "etc/hosts", "etc/hostname"), overTree); diff != "" {
		t.Errorf("overlay differs from umoci unpack (-umoci +overlay):\n%s", diff)
	}
	for p, want := range map[string]bool{"srv/a": true, "srv/gone": false, "srv/dir": false, "srv/opq/old": false, "srv/opq/new": true, "srv/link": true} {
		if _, err := os.Lstat(filepath.Join(over, "rootfs", p)); (err == nil) != want {
			t.Errorf("%s: %v, want present %v", p, err, want)
		}
	}

	// bundle --rm: no mount, nothing left; a directory knast did not make is refused.
	w.must(w.knast("bundle", "--rm", over))
	if _, err := os.Lstat(over); !os.IsNotExist(err) || isMounted(t, over) {
		t.Errorf("after bundle --rm: %v, mounted %v", err, isMounted(t, over))
	}
	w.must(w.knast("bundle", "--rm", copied))
	foreign := t.TempDir()
	os.WriteFile(filepath.Join(foreign, "config.json"), []byte(`{"ociVersion":"1.2.0"}`), 0o644)
	if r := w.knast("bundle", "--rm", foreign); r.code == 0 || !strings.Contains(r.stderr, "not made by knast bundle") {
		t.Errorf("bundle --rm of a foreign dir: %s", r)
	}
	if _, err := os.Stat(filepath.Join(foreign, "config.json")); err != nil {
		t.Errorf("the foreign bundle was touched: %v", err)
	}

	// A container's delete unmounts the rootfs and removes the upper dir: after run (which deletes)
	// and after delete --force of a created container.
	for _, tc := range []struct{ name, id string }{{"run", "ovl-run"}, {"create+delete --force", "ovl-created"}} {
		b := filepath.Join(t.TempDir(), "b")
		w.must(w.knast("bundle", ref, b))
		t.Cleanup(func() { w.cleanupBundle(b) })
		if tc.id == "ovl-run" {
			if r := w.knast("run", "--bundle", b, tc.id); r.code != 0 || r.stdout != "a2new\n" {
				t.Errorf("%s: %s", tc.name, r)
			}
		} else {
			// The init keeps knast's stdio, so it gets a file, never a pipe the wait would hang on.
			out, err := os.Create(filepath.Join(t.TempDir(), "create.out"))
			if err != nil {
				t.Fatal(err)
			}
			create := exec.CommandContext(w.ctx, w.bin, "--root", filepath.Join(w.dir, "root"), "--storage", w.storage, "create", "--bundle", b, tc.id)
			create.Stdout, create.Stderr = out, out
			err = create.Run()
			out.Close()
			if err != nil {
				log, _ := os.ReadFile(out.Name())
				t.Fatalf("create: %v\n%s", err, log)
			}
			w.must(w.knast("delete", "--force", tc.id))
		}
		if isMounted(t, b) {
			t.Errorf("%s: the rootfs is still mounted", tc.name)
		}
		if _, err := os.Lstat(filepath.Join(b, ".knast-overlay")); !os.IsNotExist(err) {
			t.Errorf("%s: upper dir: %v", tc.name, err)
		}
		w.must(w.knast("bundle", "--rm", b))
	}

	// run --image --rm: the bundle under --storage/bundles is gone, and nothing is mounted there.
	if r := w.knast("run", "--image", ref, "--rm", "--name", "ovl-image"); r.code != 0 || r.stdout != "a2new\n" {
		t.Errorf("run --image --rm: %s", r)
	}
	bundles := filepath.Join(w.storage, "bundles")
	if _, err := os.Lstat(filepath.Join(bundles, "ovl-image")); !os.IsNotExist(err) || isMounted(t, bundles) {
		t.Errorf("run --image --rm left %v, mounted %v", err, isMounted(t, bundles))
	}

	// image rm keeps the layers of a mounted bundle; prune removes them once it is gone.
	kept := filepath.Join(t.TempDir(), "kept")
	w.must(w.knast("bundle", ref, kept))
	t.Cleanup(func() { w.cleanupBundle(kept) })
	layers := func() int {
		entries, _ := os.ReadDir(filepath.Join(w.storage, "layers"))
		n := 0
		for _, e := range entries {
			if len(e.Name()) == 64 {
				n++
			}
		}
		return n
	}
	if n := layers(); n != 3 {
		t.Fatalf("%d cached layers, want 3", n)
	}
	w.must(w.knast("image", "rm", ref))
	if n := layers(); n != 3 {
		t.Errorf("image rm removed layers of a mounted bundle: %d left", n)
	}
	if b, err := os.ReadFile(filepath.Join(kept, "rootfs", "srv", "a")); err != nil || string(b) != "a2" {
		t.Errorf("the mounted bundle after image rm: %q %v", b, err)
	}
	w.must(w.knast("bundle", "--rm", kept))
	if out := w.must(w.knast("image", "prune")); !strings.Contains(out, "3 unpacked layers") || layers() != 0 {
		t.Errorf("prune: %q, %d layers left", out, layers())
	}
}
