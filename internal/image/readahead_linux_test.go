package image

import (
	"context"
	"errors"
	"os"
	"testing"
)

// TestLayerBlobTampered: a layer blob changed in the store after the pull is refused while it is
// unpacked (decompression runs ahead in another goroutine), and neither it nor a layer above it
// enters the cache.
func TestLayerBlobTampered(t *testing.T) {
	requireOverlay(t)
	tests := []struct {
		name     string
		layer    int
		tamper   func(t *testing.T, s *Store, blob string, img *Image)
		wantErr  error // nil: any error
		cachedOK int   // layers that may stay cached
	}{
		{name: "base replaced by another valid layer", layer: 0, wantErr: ErrDigestMismatch, cachedOK: 0,
			tamper: func(t *testing.T, s *Store, blob string, img *Image) { copyBlob(t, s, img.Layers[2].Digest, blob) }},
		{name: "top replaced by another valid layer", layer: 2, wantErr: ErrDigestMismatch, cachedOK: 2,
			tamper: func(t *testing.T, s *Store, blob string, img *Image) { copyBlob(t, s, img.Layers[1].Digest, blob) }},
		{name: "middle byte flipped", layer: 1, cachedOK: 1,
			tamper: func(t *testing.T, _ *Store, blob string, _ *Image) {
				b, err := os.ReadFile(blob)
				if err != nil {
					t.Fatal(err)
				}
				b[len(b)/2] ^= 0xff
				if err := os.WriteFile(blob, b, 0o644); err != nil {
					t.Fatal(err)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			img := pullImage(t, s, changesetImage(t), "layers/tampered")
			h, err := parseDigest(img.Layers[tt.layer].Digest)
			if err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, s, s.blobPath(h), img)
			_, err = s.PrepareLayers(context.Background(), img)
			if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
				t.Fatalf("PrepareLayers: %v, want an error (%v)", err, tt.wantErr)
			}
			if c := cachedLayers(t, s); len(c) != tt.cachedOK {
				t.Errorf("cache after the failure: %v, want %d layers", c, tt.cachedOK)
			}
		})
	}
}

func copyBlob(t *testing.T, s *Store, from, to string) {
	t.Helper()
	h, err := parseDigest(from)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(s.blobPath(h))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
