package image

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCommit(t *testing.T) {
	ctx := context.Background()
	st, err := Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	unhold, err := st.HoldBlobs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer unhold()
	layer, size, err := st.WriteBlob(ctx, func(w io.Writer) error {
		_, err := io.WriteString(w, "not really a tar, the store does not look")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !st.HasBlob(layer) || size != 41 {
		t.Fatalf("WriteBlob = %s, %d; blob present %v", layer, size, st.HasBlob(layer))
	}
	// The same bytes again are the same blob.
	again, _, err := st.WriteBlob(ctx, func(w io.Writer) error {
		_, err := io.WriteString(w, "not really a tar, the store does not look")
		return err
	})
	if err != nil || again != layer {
		t.Fatalf("second WriteBlob = %s, %v", again, err)
	}
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.Digest(layer)}}}
	raw, _ := json.Marshal(cfg)
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.Digest(layer), Size: size}

	cases := []struct {
		name    string
		o       CommitOptions
		wantErr string
	}{
		{"no name", CommitOptions{Config: raw, Layers: []ocispec.Descriptor{desc}}, "no name given"},
		{"bad name", CommitOptions{Names: []string{"UPPER/case"}, Config: raw, Layers: []ocispec.Descriptor{desc}}, "commit:"},
		{"missing layer", CommitOptions{Names: []string{"localhost/x"}, Config: raw, Layers: []ocispec.Descriptor{{Digest: digest.FromString("absent"), Size: 1}}}, "is not in the store"},
		{"two names", CommitOptions{Names: []string{"localhost/built:1", "example.com/a/b"}, Config: raw, Layers: []ocispec.Descriptor{desc}, Platform: "linux/amd64"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			md, err := st.Commit(ctx, tc.o)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"localhost/built:1", "example.com/a/b:latest"} {
				img, err := st.Resolve(ctx, n, "")
				if err != nil {
					t.Fatalf("resolve %s: %v", n, err)
				}
				if img.ManifestDigest != md || len(img.Layers) != 1 || img.Layers[0].Digest != layer || img.Platform != "linux/amd64" {
					t.Errorf("resolve %s = %+v", n, img)
				}
				if string(img.RawConfig) != string(raw) {
					t.Errorf("config %s, want %s", img.RawConfig, raw)
				}
			}
			idx, err := os.ReadFile(filepath.Join(st.LayoutDir(), "index.json"))
			if err != nil || !strings.Contains(string(idx), "localhost/built:1") || !strings.Contains(string(idx), md) {
				t.Errorf("index.json does not name the image: %s", idx)
			}
		})
	}
}
