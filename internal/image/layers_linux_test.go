package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/image/unpack"
)

// ent is one tar entry of a test layer.
type ent struct {
	name, data, link string
	typ              byte
	mode             int64
	uid, gid         int
	xattrs           map[string]string
}

func tarLayer(t *testing.T, ents ...ent) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	mt := time.Unix(1700000000, 0)
	for _, e := range ents {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid, Linkname: e.link, ModTime: mt, Format: tar.FormatPAX}
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
		if h.Typeflag == tar.TypeChar {
			h.Devmajor, h.Devminor = 1, 3
		}
		for k, v := range e.xattrs {
			if h.PAXRecords == nil {
				h.PAXRecords = map[string]string{}
			}
			h.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			tw.Write([]byte(e.data))
		}
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

func layeredImage(t *testing.T, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), &v1.ConfigFile{
		OS: "linux", Architecture: "amd64", RootFS: v1.RootFS{Type: "layers"}})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.AppendLayers(img, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// changesetImage exercises what a per-layer overlay can get wrong: whiteouts of files and dirs,
// opaque dirs, a file recreated after its whiteout, parents only implied by an entry (their mode and
// owner come from below), a path through a lower layer's symlink, a hardlink to a lower file, and
// forged overlay xattrs.
func changesetImage(t *testing.T) v1.Image {
	t.Helper()
	d := byte(tar.TypeDir)
	base := tarLayer(t,
		ent{name: "./", typ: d, mode: 0o751},
		ent{name: "etc/", typ: d}, ent{name: "etc/a", data: "a0"}, ent{name: "etc/keep", data: "k0"},
		ent{name: "tmp/", typ: d, mode: 0o1777},
		ent{name: "usr/", typ: d}, ent{name: "usr/lib/", typ: d}, ent{name: "usr/lib/x", data: "x0", mode: 0o4755},
		ent{name: "lib", typ: tar.TypeSymlink, link: "usr/lib"},
		ent{name: "opq/", typ: d}, ent{name: "opq/old1", data: "o1"}, ent{name: "opq/sub/", typ: d}, ent{name: "opq/sub/old2", data: "o2"},
		ent{name: "data/", typ: d, mode: 0o750, uid: 1000, gid: 1000}, ent{name: "data/f", data: "f0", uid: 1000, gid: 1000},
		ent{name: "hl/", typ: d}, ent{name: "hl/orig", data: "linked", mode: 0o600},
		ent{name: "gone/", typ: d}, ent{name: "gone/child", data: "c"},
		ent{name: "evil/", typ: d}, ent{name: "evil/visible", data: "v"},
		ent{name: "dev/", typ: d}, ent{name: "dev/null", typ: tar.TypeChar, mode: 0o666},
	)
	mid := tarLayer(t,
		ent{name: "etc/.wh.a"}, ent{name: ".wh.gone"},
		ent{name: "opq/", typ: d, mode: 0o700}, ent{name: "opq/.wh..wh..opq"}, ent{name: "opq/new", data: "n1"},
		ent{name: "tmp/newfile", data: "t1"},
		ent{name: "lib/y", data: "y1"},
		ent{name: "hl/link", typ: tar.TypeLink, link: "hl/orig"},
		ent{name: "data/g", data: "g1", uid: 1000},
		ent{name: "etc/keep", data: "k1", xattrs: map[string]string{"user.knast": "v1"}},
		ent{name: "evil/", typ: d, xattrs: map[string]string{"trusted.overlay.opaque": "y"}},
	)
	top := tarLayer(t,
		ent{name: "etc/.wh.keep"}, ent{name: "etc/a", data: "a2"},
		ent{name: "opq/.wh.new"}, ent{name: "opq/sub/", typ: d},
		ent{name: "newdir/.wh..wh..opq"}, ent{name: "newdir/f", data: "nd"},
	)
	return layeredImage(t, base, mid, top)
}

// snapshot describes every path under root: type, mode, owner, size, content or link target,
// device number, mtime and user xattrs.
func snapshot(t *testing.T, root string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("%o %d:%d mtime=%d", st.Mode, st.Uid, st.Gid, st.Mtim.Nano())
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" %x", sha256.Sum256(b))
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc += " -> " + l
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" dev=%d", st.Rdev)
		}
		if rel == "." {
			desc = strings.Replace(desc, fmt.Sprintf("mtime=%d", st.Mtim.Nano()), "", 1) // the root's time is the caller's
		}
		buf := make([]byte, 4096)
		if n, err := unix.Llistxattr(p, buf); err == nil && n > 0 {
			names := strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00")
			sort.Strings(names)
			for _, x := range names {
				v := make([]byte, 256)
				m, _ := unix.Lgetxattr(p, x, v)
				desc += fmt.Sprintf(" %s=%q", x, v[:max(m, 0)])
			}
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func pullImage(t *testing.T, s *Store, img v1.Image, repo string) *Image {
	t.Helper()
	host, _ := newRegistry(t, nil)
	ref := host + "/" + repo + ":1"
	push(t, ref, img)
	got, err := s.Pull(context.Background(), ref, pullOpts("linux/amd64"))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func requireOverlay(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("overlay mounts need root")
	}
	if err := overlaySupported(); err != nil {
		t.Skipf("no overlayfs here: %v", err)
	}
}

func copyUnpack(t *testing.T, s *Store, img *Image, dir string) {
	t.Helper()
	var rs []io.Reader
	for _, l := range img.Layers {
		rc, err := s.OpenBlob(l.Digest)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		rs = append(rs, rc)
	}
	if err := unpack.Unpack(context.Background(), dir, rs, unpack.Options{}); err != nil {
		t.Fatal(err)
	}
}

func mountFor(t *testing.T, s *Store, img *Image) (rootfs, state string) {
	t.Helper()
	bundle := t.TempDir()
	rootfs, state = filepath.Join(bundle, "rootfs"), filepath.Join(bundle, OverlayStateDir)
	if err := os.Mkdir(rootfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := s.MountRootfs(context.Background(), img, rootfs, state); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { UnmountRootfs(rootfs, state) })
	return rootfs, state
}

// TestOverlayMatchesCopy: the overlay of cached layers shows exactly the tree a copy of the layers
// makes, for every changeset case.
func TestOverlayMatchesCopy(t *testing.T) {
	requireOverlay(t)
	s := newStore(t)
	img := pullImage(t, s, changesetImage(t), "layers/changeset")
	copyRoot := filepath.Join(t.TempDir(), "copy")
	copyUnpack(t, s, img, copyRoot)
	rootfs, _ := mountFor(t, s, img)
	want, got := snapshot(t, copyRoot), snapshot(t, rootfs)
	// newdir is implied by its entries only, so both made it now: its mtime is not the image's.
	for _, m := range []map[string]string{want, got} {
		m["newdir"] = strings.Split(m["newdir"], " mtime=")[0]
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("overlay differs from copy (-copy +overlay):\n%s", diff)
	}
	// Spot checks that the comparison saw the cases at all.
	for p, wantDesc := range map[string]string{
		"etc/a":        "a2",
		"usr/lib/y":    "", // written through the lower layer's symlink
		"evil/visible": "", // the forged opaque xattr was ignored
		"tmp/newfile":  "",
		"newdir/f":     "",
	} {
		b, err := os.ReadFile(filepath.Join(rootfs, p))
		if err != nil || (wantDesc != "" && string(b) != wantDesc) {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	for _, p := range []string{"gone", "etc/keep", "opq/old1", "opq/sub/old2", "opq/new"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s should be deleted: %v", p, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(rootfs, "tmp")); err != nil || fi.Mode()&fs.ModeSticky == 0 {
		t.Errorf("/tmp lost its sticky bit: %v %v", fi.Mode(), err)
	}
	// Writes go to the upper dir, never into the shared layers.
	if err := os.WriteFile(filepath.Join(rootfs, "etc", "a"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	other, _ := mountFor(t, s, img)
	if b, _ := os.ReadFile(filepath.Join(other, "etc", "a")); string(b) != "a2" {
		t.Errorf("a second mount sees %q: a write reached a cached layer", b)
	}
}

// TestLayerCache: layers are unpacked once per chain ID, concurrently safe; a lying diff ID is
// refused and leaves nothing cached; unmount is idempotent; prune keeps layers of stored images and
// of mounted rootfs and removes the rest.
func TestLayerCache(t *testing.T) {
	requireOverlay(t)
	ctx := context.Background()
	s := newStore(t)
	img := pullImage(t, s, changesetImage(t), "layers/cache")

	var wg sync.WaitGroup
	errs := make([]error, 4)
	roots := make([]string, 4)
	for i := range errs {
		bundle := t.TempDir()
		roots[i] = filepath.Join(bundle, "rootfs")
		os.Mkdir(roots[i], 0o755)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.MountRootfs(ctx, img, roots[i], filepath.Join(bundle, OverlayStateDir))
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("mount %d: %v", i, err)
		}
		if b, err := os.ReadFile(filepath.Join(roots[i], "etc", "a")); err != nil || string(b) != "a2" {
			t.Errorf("mount %d: etc/a %q %v", i, b, err)
		}
	}
	if got := cachedLayers(t, s); len(got) != 3 {
		t.Errorf("cache holds %v, want the 3 chain IDs", got)
	}

	// Unmount: idempotent, removes the state dir, leaves no mount.
	state := filepath.Join(filepath.Dir(roots[0]), OverlayStateDir)
	for range 2 {
		if err := UnmountRootfs(roots[0], state); err != nil {
			t.Fatal(err)
		}
	}
	if isOverlayMount(roots[0]) {
		t.Error("still mounted")
	}
	if _, err := os.Stat(state); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("state dir: %v", err)
	}

	// rm of the image: layers still mounted stay.
	if _, rep, err := s.Remove(ctx, []string{img.Ref}); err != nil || len(rep.Layers) != 0 {
		t.Fatalf("rm: %+v %v", rep, err)
	}
	if got := cachedLayers(t, s); len(got) != 3 {
		t.Errorf("after rm with mounts: %v", got)
	}
	for _, r := range roots[1:] {
		UnmountRootfs(r, filepath.Join(filepath.Dir(r), OverlayStateDir))
	}
	rep, err := s.Prune(ctx)
	if err != nil || len(rep.Layers) != 3 {
		t.Fatalf("prune after unmount: %+v %v", rep, err)
	}
	if got := cachedLayers(t, s); len(got) != 0 {
		t.Errorf("after prune: %v", got)
	}

	// A stored image keeps its layers through prune.
	img = pullImage(t, s, changesetImage(t), "layers/kept")
	if _, err := s.PrepareLayers(ctx, img); err != nil {
		t.Fatal(err)
	}
	if rep, err := s.Prune(ctx); err != nil || len(rep.Layers) != 0 {
		t.Errorf("prune removed layers of a stored image: %+v %v", rep, err)
	}
}

func cachedLayers(t *testing.T, s *Store) []string {
	t.Helper()
	entries, err := os.ReadDir(s.layersDir())
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Name() != "mounts" {
			out = append(out, e.Name())
		}
	}
	return out
}

// TestLayerDiffIDMismatch: a config whose diff ID does not match the layer is refused before the
// layer enters the cache, so it cannot poison another image with that chain ID.
func TestLayerDiffIDMismatch(t *testing.T) {
	requireOverlay(t)
	s := newStore(t)
	img := changesetImage(t)
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.RootFS.DiffIDs[1] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	bad, err := mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	got := pullImage(t, s, bad, "layers/liar")
	_, err = s.PrepareLayers(context.Background(), got)
	if !errors.Is(err, unpack.ErrDiffID) {
		t.Fatalf("PrepareLayers: %v, want ErrDiffID", err)
	}
	if c := cachedLayers(t, s); len(c) != 1 {
		t.Errorf("cache after the failure: %v, want only the honest base layer", c)
	}
}

func TestChainIDs(t *testing.T) {
	a, b := "sha256:"+strings.Repeat("a", 64), "sha256:"+strings.Repeat("b", 64)
	sum := sha256.Sum256([]byte(a + " " + b))
	tests := []struct {
		in, want []string
	}{
		{in: nil, want: []string{}},
		{in: []string{a}, want: []string{a}},
		{in: []string{a, b}, want: []string{a, fmt.Sprintf("sha256:%x", sum)}},
	}
	for _, tt := range tests {
		if got := ChainIDs(tt.in); !cmp.Equal(got, tt.want) {
			t.Errorf("ChainIDs(%v) = %v, want %v", tt.in, got, tt.want)
		}
	}
}
