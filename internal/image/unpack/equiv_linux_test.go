package unpack

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// equivLayers exercise every entry kind and the changeset rules across three layers.
func equivLayers() [][]ent {
	t1 := time.Date(2021, 5, 6, 7, 8, 9, 0, time.UTC)
	at := func(e ent, t time.Time) ent { return with(e, func(h *tar.Header) { h.ModTime = t }) }
	own := func(e ent, uid, gid int) ent { return with(e, func(h *tar.Header) { h.Uid, h.Gid = uid, gid }) }
	mode := func(e ent, m int64) ent { return with(e, func(h *tar.Header) { h.Mode = m }) }
	xattrs := func(e ent, kv ...string) ent {
		return with(e, func(h *tar.Header) {
			h.Format = tar.FormatPAX
			h.PAXRecords = map[string]string{}
			for i := 0; i < len(kv); i += 2 {
				h.PAXRecords["SCHILY.xattr."+kv[i]] = kv[i+1]
			}
		})
	}
	capv := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"
	return [][]ent{
		{
			dir("bin"), dir("etc"), dir("usr"), dir("usr/bin"), dir("dev"), mode(dir("tmp"), 0o1777),
			dir("var"), dir("var/lib"), own(dir("var/lib/data"), 1000, 1000), dir("old"), file("old/f", "old"),
			file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), mode(file("etc/shadow", "secret"), 0o600),
			mode(file("bin/sh", "#!shell"), 0o4755), mode(file("bin/sg", "sg"), 0o2755),
			xattrs(file("usr/bin/tool", "tool binary"), "user.origin", "test", "security.capability", capv),
			hardlink("usr/bin/tool2", "usr/bin/tool"), symlink("bin/link", "../usr/bin/tool"),
			symlink("abs", "/etc/passwd"), own(symlink("owned", "nowhere"), 7, 8),
			{Header: tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Mode: 0o666, Devmajor: 1, Devminor: 3, ModTime: t0}},
			{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "dev/loop9", Mode: 0o660, Devmajor: 7, Devminor: 9, Gid: 6, ModTime: t0}},
			{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/fifo", Mode: 0o620, ModTime: t0}},
			own(file("var/lib/data/a", "a"), 1000, 1000), file("var/lib/data/b", "b"), dir("var/lib/data/sub"), file("var/lib/data/sub/c", "c"),
			file("etc/gone", "x"), file("etc/link-me", "linked"),
		},
		{
			at(dir("etc"), t1), at(file("etc/passwd", "root:x:0:0::/root:/bin/ash\n"), t1), whiteout("etc/gone"),
			whiteout("var/lib/data/a"), file("old", "now a file"), at(dir("bin/link"), t1),
			at(dir("var/lib/data/sub"), t1), file("var/lib/data/sub/.wh..wh..opq", ""), file("var/lib/data/sub/new", "new"),
			hardlink("etc/hl", "etc/link-me"), mode(dir("usr/bin"), 0o711),
		},
		{
			whiteout("usr/bin/tool"), symlink("etc/shadow", "passwd"), at(file("var/lib/data/b", "bb"), t1),
		},
	}
}

func TestEquivalentToUmoci(t *testing.T) {
	umoci, err := exec.LookPath("umoci")
	if err != nil {
		t.Skip("umoci is not installed (apt-get install umoci): cannot compare")
	}
	base := t.TempDir()
	var layers [][]byte
	for _, l := range equivLayers() {
		layers = append(layers, layerTar(t, l...))
	}
	layout := filepath.Join(base, "oci")
	writeLayout(t, layout, "equiv", layers)
	bundle := filepath.Join(base, "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layout+":equiv", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	ours := filepath.Join(base, "ours", "rootfs")
	var gz [][]byte
	for _, l := range layers {
		gz = append(gz, gzipped(t, l))
	}
	if err := Unpack(context.Background(), ours, readers(gz...), Options{}); err != nil {
		t.Fatal(err)
	}
	want := snapshot(t, filepath.Join(bundle, "rootfs"), true)
	got := snapshot(t, ours, true)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("tree differs from umoci's (-umoci +knast):\n%s", diff)
	}
	if len(got) < 25 {
		t.Errorf("suspiciously small tree (%d paths): %v", len(got), got)
	}
}

// writeLayout writes an OCI image layout with one manifest of gzip layers, tagged tag.
func writeLayout(t *testing.T, dir, tag string, layers [][]byte) {
	t.Helper()
	blob := func(b []byte) map[string]any {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		p := filepath.Join(dir, "blobs", "sha256", hex.EncodeToString(sum[:]))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return map[string]any{"digest": d, "size": len(b)}
	}
	mustJSON := func(v any) []byte {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	var diffIDs []string
	var descs []map[string]any
	for _, l := range layers {
		sum := sha256.Sum256(l)
		diffIDs = append(diffIDs, fmt.Sprintf("sha256:%x", sum))
		d := blob(gzipped(t, l))
		d["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
		descs = append(descs, d)
	}
	cfg := blob(mustJSON(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs}}))
	cfg["mediaType"] = "application/vnd.oci.image.config.v1+json"
	man := blob(mustJSON(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": cfg, "layers": descs}))
	man["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	man["annotations"] = map[string]string{"org.opencontainers.image.ref.name": tag}
	index := mustJSON(map[string]any{"schemaVersion": 2, "manifests": []any{man}})
	for name, b := range map[string][]byte{"index.json": index, "oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
