package testutil

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// smallTree is a rootfs with one of each supported entry type.
func smallTree(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("tool", filepath.Join(dir, "bin", "alias")); err != nil {
		t.Fatal(err)
	}
	return dir
}

type tarEntry struct {
	Type     byte
	Mode     int64
	Linkname string
	Data     string
}

func readTar(t *testing.T, r io.Reader) (names []string, entries map[string]tarEntry) {
	t.Helper()
	entries = map[string]tarEntry{}
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return names, entries
		}
		if err != nil {
			t.Fatalf("read tar: %v", err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
		entries[hdr.Name] = tarEntry{hdr.Typeflag, hdr.Mode & 0o7777, hdr.Linkname, string(data)}
	}
}

func TestWriteLayer(t *testing.T) {
	dir := smallTree(t)
	var buf bytes.Buffer
	if err := WriteLayer(&buf, dir); err != nil {
		t.Fatal(err)
	}
	names, entries := readTar(t, bytes.NewReader(buf.Bytes()))
	wantNames := []string{"bin/", "bin/alias", "bin/tool"}
	if strings.Join(names, ",") != strings.Join(wantNames, ",") {
		t.Fatalf("entries %v, want %v (sorted, dirs with a slash)", names, wantNames)
	}
	tests := []struct {
		name string
		want tarEntry
	}{
		{"bin/", tarEntry{Type: tar.TypeDir, Mode: 0o755}},
		{"bin/alias", tarEntry{Type: tar.TypeSymlink, Mode: 0o777, Linkname: "tool"}},
		{"bin/tool", tarEntry{Type: tar.TypeReg, Mode: 0o755, Data: "#!/bin/sh\n"}},
	}
	for _, tc := range tests {
		if got := entries[tc.name]; got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
	// Same tree, same bytes: image digests must not depend on when the test ran.
	var again bytes.Buffer
	if err := WriteLayer(&again, dir); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), again.Bytes()) {
		t.Error("two layers of the same tree differ")
	}
}

func TestWriteLayerRejectsSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "sock"))
	if err != nil {
		t.Skipf("skipping: cannot make a unix socket to test with: %v", err)
	}
	defer l.Close()
	if err := WriteLayer(io.Discard, dir); err == nil || !strings.Contains(err.Error(), "unsupported file type") {
		t.Errorf("want an unsupported file type error, got %v", err)
	}
	if err := WriteLayer(io.Discard, filepath.Join(dir, "missing")); err == nil {
		t.Error("want an error for a missing rootfs")
	}
}

func TestWriteOCIArchive(t *testing.T) {
	dir := smallTree(t)
	var buf bytes.Buffer
	cfg := ImageConfig{Name: "localhost:5000/ns/img:v1", Env: []string{"A=b"}, Cmd: []string{"/bin/tool"}, Arch: "arm64"}
	if err := WriteOCIArchive(&buf, dir, cfg); err != nil {
		t.Fatal(err)
	}
	_, entries := readTar(t, bytes.NewReader(buf.Bytes()))
	blob := func(d descriptor) []byte {
		t.Helper()
		e, ok := entries["blobs/sha256/"+strings.TrimPrefix(d.Digest, "sha256:")]
		if !ok {
			t.Fatalf("blob %s missing from the archive", d.Digest)
		}
		if digestOf([]byte(e.Data)) != d.Digest || int64(len(e.Data)) != d.Size {
			t.Fatalf("blob %s: content does not match its descriptor", d.Digest)
		}
		return []byte(e.Data)
	}
	if entries["oci-layout"].Data != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q", entries["oci-layout"].Data)
	}
	var index struct {
		Manifests []descriptor `json:"manifests"`
	}
	if err := json.Unmarshal([]byte(entries["index.json"].Data), &index); err != nil {
		t.Fatal(err)
	}
	if len(index.Manifests) != 1 {
		t.Fatalf("index has %d manifests, want 1", len(index.Manifests))
	}
	m := index.Manifests[0]
	if m.Annotations["io.containerd.image.name"] != cfg.Name || m.Annotations["org.opencontainers.image.ref.name"] != "v1" {
		t.Errorf("annotations %v: want the full name and tag v1 (the registry port is no tag)", m.Annotations)
	}
	if m.Platform == nil || m.Platform.Architecture != "arm64" || m.Platform.OS != "linux" {
		t.Errorf("platform %+v, want linux/arm64", m.Platform)
	}
	var manifest struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(blob(m), &manifest); err != nil {
		t.Fatal(err)
	}
	var config struct {
		Config struct{ Env, Cmd []string }
		RootFS struct {
			DiffIDs []string `json:"diff_ids"`
		} `json:"rootfs"`
	}
	if err := json.Unmarshal(blob(manifest.Config), &config); err != nil {
		t.Fatal(err)
	}
	if len(manifest.Layers) != 1 || len(config.RootFS.DiffIDs) != 1 {
		t.Fatalf("want one layer and one diff id: %+v %+v", manifest.Layers, config.RootFS)
	}
	if strings.Join(config.Config.Cmd, " ") != "/bin/tool" || strings.Join(config.Config.Env, " ") != "A=b" {
		t.Errorf("config %+v", config.Config)
	}
	zr, err := gzip.NewReader(bytes.NewReader(blob(manifest.Layers[0])))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	// The diff id is the digest of the uncompressed layer.
	if digestOf(raw) != config.RootFS.DiffIDs[0] {
		t.Errorf("diff id %s is not the uncompressed layer's digest %s", config.RootFS.DiffIDs[0], digestOf(raw))
	}
	if _, layer := readTar(t, bytes.NewReader(raw)); layer["bin/tool"].Data != "#!/bin/sh\n" {
		t.Errorf("layer lacks bin/tool: %v", layer)
	}

	if err := WriteOCIArchive(io.Discard, dir, ImageConfig{}); err == nil {
		t.Error("want an error for an empty image name")
	}
}
