//go:build linux

package hardening

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/testutil"
)

// canary is a host directory that hostile input aims at; check fails the test if anything in it
// changed (content, mode, owner, times, link count, xattrs) or anything was added, or if a mount
// appeared on it.
type canary struct {
	dir  string
	want string
}

func newCanary(t *testing.T) *canary {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "canary")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"keep", "passwd", "sub/keep"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("canary "+f+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, f := range []string{"keep", "passwd", "sub/keep", "sub", "."} {
		if err := os.Chtimes(filepath.Join(dir, f), old, old); err != nil {
			t.Fatal(err)
		}
	}
	c := &canary{dir: dir}
	c.want = c.describe(t)
	return c
}

func (c *canary) describe(t *testing.T) string {
	t.Helper()
	var lines []string
	err := filepath.WalkDir(c.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s %o %d:%d n%d m%d.%d", strings.TrimPrefix(p, c.dir), st.Mode, st.Uid, st.Gid, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec)
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		buf := make([]byte, 4096)
		if n, _ := unix.Llistxattr(p, buf); n > 0 {
			line += " xattrs=" + string(buf[:n])
		}
		lines = append(lines, line)
		return nil
	})
	if err != nil {
		t.Fatalf("canary: %v", err)
	}
	mounts, _ := testutil.MountsUnder(c.dir)
	return strings.Join(lines, "\n") + fmt.Sprintf("\nmounts %v", mounts)
}

func (c *canary) check(t *testing.T) {
	t.Helper()
	if got := c.describe(t); got != c.want {
		t.Errorf("the host canary %s changed:\n got %s\nwant %s", c.dir, got, c.want)
	}
}

// ent is one tar entry of a hand-made layer.
type ent struct {
	tar.Header
	body string
}

func file(name, body string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(body))}, body: body}
}

func dir(name string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755}}
}

func symlink(name, target string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777}}
}

func hardlink(name, target string) ent {
	return ent{Header: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target}}
}

func with(e ent, f func(*tar.Header)) ent { f(&e.Header); return e }

// layerTar writes ents as one tar stream.
func layerTar(t *testing.T, ents ...ent) []byte {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, e := range ents {
		h := e.Header
		h.Format = tar.FormatPAX
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %s: %v", h.Name, err)
		}
		tw.Write([]byte(e.body))
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func digestOf(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

// archiveOpts bend an OCI archive: a layer stored under another digest, a declared size that lies.
type archiveOpts struct {
	layerDigest func(i int, real string) string // the digest the manifest and blob name claim
	layerSize   func(i int, real int64) int64   // the size the manifest claims
	diffIDs     []string                        // config rootfs.diff_ids (default: the layers' digests)
	omitLayer   bool                            // leave the hostile layers' blobs out of the archive
}

// ociArchive writes an OCI archive named ref (full reference) whose image has the given layers
// (uncompressed tars, or gzip/zstd bytes) on top of a busybox rootfs layer, so that what a hostile
// layer leaves can still be run.
func ociArchive(t *testing.T, ref string, layers [][]byte, o archiveOpts) string {
	t.Helper()
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	var base bytes.Buffer
	if err := testutil.WriteLayer(&base, rootfs); err != nil {
		t.Fatal(err)
	}
	layers = append([][]byte{base.Bytes()}, layers...)
	blobs := map[string][]byte{}
	var descs []map[string]any
	var diffIDs []string
	for i, l := range layers {
		d, size := digestOf(l), int64(len(l))
		diffIDs = append(diffIDs, d)
		if i > 0 && o.layerDigest != nil {
			d = o.layerDigest(i-1, d)
		}
		if i > 0 && o.layerSize != nil {
			size = o.layerSize(i-1, size)
		}
		if i == 0 || !o.omitLayer {
			blobs[d] = l
		}
		descs = append(descs, map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size})
	}
	if o.diffIDs != nil {
		diffIDs = append(diffIDs[:1], o.diffIDs...)
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"sh"}}, "rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}})
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digestOf(cfg), "size": len(cfg)},
		"layers": descs})
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []map[string]any{{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": digestOf(man), "size": len(man),
			"annotations": map[string]string{"io.containerd.image.name": ref, "org.opencontainers.image.ref.name": "x"}}}})
	blobs[digestOf(cfg)], blobs[digestOf(man)] = cfg, man
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	add := func(name string, b []byte) {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))}); err != nil {
			t.Fatal(err)
		}
		tw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", idx)
	names := make([]string, 0, len(blobs))
	for d := range blobs {
		names = append(names, d)
	}
	slices.Sort(names)
	for _, d := range names {
		add("blobs/sha256/"+strings.TrimPrefix(d, "sha256:"), blobs[d])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(p, out.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// checkStore fails t unless every blob of storage matches its digest and no download is left in tmp/.
func checkStore(t *testing.T, storage string, allowPartial bool) {
	t.Helper()
	blobs, err := os.ReadDir(filepath.Join(storage, "oci", "blobs", "sha256"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(storage, "oci", "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if d := digestOf(data); d != "sha256:"+b.Name() {
			t.Errorf("store blob %s holds content %s: a half-written or corrupt blob", b.Name(), d)
		}
	}
	if allowPartial {
		return
	}
	if tmp, _ := os.ReadDir(filepath.Join(storage, "tmp")); len(tmp) > 0 {
		var names []string
		for _, e := range tmp {
			names = append(names, e.Name())
		}
		t.Errorf("STORAGE/tmp holds %v", names)
	}
}
