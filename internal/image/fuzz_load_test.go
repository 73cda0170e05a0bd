package image

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/knast/knast/internal/image/unpack"
	"github.com/knast/knast/internal/spec"
)

// fuzzArchive writes an OCI archive whose index.json, manifest, config and one layer are the fuzzer's
// bytes. So that the fuzzer gets past digest verification to the parsers, the placeholders {M} {MS}
// (manifest digest, size), {C} {CS} (config) and {L} {LS} (layer) are replaced by the real values
// before the blobs are hashed. extra adds one raw tar entry (name, content) the fuzzer controls.
func fuzzArchive(index, manifest, config, layer []byte, extraName string, extra []byte) []byte {
	digest := func(b []byte) string { s := sha256.Sum256(b); return "sha256:" + hex.EncodeToString(s[:]) }
	fill := func(b []byte, kv ...string) []byte { return []byte(strings.NewReplacer(kv...).Replace(string(b))) }
	manifest = fill(manifest, "{C}", digest(config), "{CS}", fmt.Sprint(len(config)), "{L}", digest(layer), "{LS}", fmt.Sprint(len(layer)))
	index = fill(index, "{M}", digest(manifest), "{MS}", fmt.Sprint(len(manifest)))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		if tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b))}) == nil {
			tw.Write(b)
		}
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", index)
	for _, b := range [][]byte{manifest, config, layer} {
		add("blobs/sha256/"+strings.TrimPrefix(digest(b), "sha256:"), b)
	}
	if extraName != "" {
		add(extraName, extra)
	}
	tw.Close()
	return buf.Bytes()
}

// FuzzLoadArchive drives `knast image load` and then `knast bundle` on archives whose index,
// manifest, config and layer are arbitrary: Load, Resolve, unpacking the layers and FromImage must
// never panic; afterwards every blob in the store must match its digest, STORAGE/tmp must be empty
// and the names database must still list; nothing may be written beside the store.
func FuzzLoadArchive(f *testing.F) {
	const (
		index    = `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{M}","size":{MS},"annotations":{"org.opencontainers.image.ref.name":"localhost/fuzz:1"}}]}`
		manifest = `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{C}","size":{CS}},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{L}","size":{LS}}]}`
		config   = `{"architecture":"amd64","os":"linux","config":{"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}`
	)
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "etc", Linkname: "../../../../outside"})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/passwd", Size: 2})
	tw.Write([]byte("x\n"))
	tw.Close()
	f.Add([]byte(index), []byte(manifest), []byte(config), layer.Bytes(), "", []byte(nil))
	f.Fuzz(func(t *testing.T, index, manifest, config, layer []byte, extraName string, extra []byte) {
		ctx := context.Background()
		base := t.TempDir()
		dir := filepath.Join(base, "storage")
		s, err := Open(dir, nil)
		if err != nil {
			t.Fatal(err)
		}
		names, err := s.Load(ctx, bytes.NewReader(fuzzArchive(index, manifest, config, layer, extraName, extra)))
		if err == nil {
			for _, n := range names {
				bundleImage(t, s, n, filepath.Join(base, "bundle"))
			}
		}
		checkStore(t, s)
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if e.Name() != "storage" && e.Name() != "bundle" {
				t.Errorf("load wrote %s beside the store", e.Name())
			}
		}
	})
}

// bundleImage is what `knast bundle` does with a stored image; errors are fine, panics are not.
func bundleImage(t *testing.T, s *Store, name, dir string) {
	img, err := s.Resolve(context.Background(), name, "")
	if err != nil {
		return
	}
	rootfs := filepath.Join(dir, "rootfs")
	var layers []io.Reader
	for _, l := range img.Layers {
		rc, err := s.OpenBlob(l.Digest)
		if err != nil {
			return
		}
		defer rc.Close()
		layers = append(layers, rc)
	}
	if unpack.Unpack(context.Background(), rootfs, layers, unpack.Options{MaxBytes: 1 << 20, MaxEntries: 128}) != nil {
		return
	}
	if _, err := spec.FromImage(img.Config, rootfs, spec.FromImageOptions{Ref: name, Digest: img.ManifestDigest}); err != nil {
		return
	}
}

// checkStore fails t unless every blob matches its name, tmp/ holds no download or work dir and the
// database lists.
func checkStore(t *testing.T, s *Store) {
	t.Helper()
	blobs, err := os.ReadDir(filepath.Join(s.LayoutDir(), "blobs", "sha256"))
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		data, err := os.ReadFile(filepath.Join(s.LayoutDir(), "blobs", "sha256", b.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != b.Name() {
			t.Errorf("blob %s does not match its digest", b.Name())
		}
	}
	tmp, _ := os.ReadDir(filepath.Join(s.Dir(), "tmp"))
	for _, e := range tmp {
		t.Errorf("tmp/ holds %s after load", e.Name())
	}
	if _, err := s.List(context.Background()); err != nil {
		t.Errorf("names database does not list after load: %v", err)
	}
}
