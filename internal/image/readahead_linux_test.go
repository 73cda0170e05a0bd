package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/knast/knast/internal/image/unpack"
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
			host, _ := newRegistry(t, nil)
			ref := host + "/layers/tampered:1"
			push(t, ref, changesetImage(t))
			o := pullOpts("linux/amd64")
			o.NoUnpack = true // the blob is tampered with between the pull and the unpack
			img, err := s.Pull(context.Background(), ref, o)
			if err != nil {
				t.Fatal(err)
			}
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

// TestPullUnpacks: a pull unpacks the layers into the cache as their blobs arrive, unless
// NoUnpack; a config that lies about a diff ID fails no pull, and its layer stays out of the cache.
func TestPullUnpacks(t *testing.T) {
	requireOverlay(t)
	liar := func(t *testing.T) v1.Image {
		img := changesetImage(t)
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs[2] = v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("cd", 32)}
		bad, err := mutate.ConfigFile(img, cf)
		if err != nil {
			t.Fatal(err)
		}
		return bad
	}
	tests := []struct {
		name     string
		img      func(*testing.T) v1.Image
		noUnpack bool
		want     int
	}{
		{name: "default", img: changesetImage, want: 3},
		{name: "no unpack", img: changesetImage, noUnpack: true, want: 0},
		{name: "lying diff id", img: liar, want: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			host, _ := newRegistry(t, nil)
			ref := host + "/layers/early:1"
			push(t, ref, tt.img(t))
			o := pullOpts("linux/amd64")
			o.NoUnpack = tt.noUnpack
			img, err := s.Pull(context.Background(), ref, o)
			if err != nil {
				t.Fatal(err)
			}
			if c := cachedLayers(t, s); len(c) != tt.want {
				t.Fatalf("cache after the pull: %v, want %d layers", c, tt.want)
			}
			if tt.want < 3 && !tt.noUnpack {
				if _, err := s.PrepareLayers(context.Background(), img); !errors.Is(err, unpack.ErrDiffID) {
					t.Fatalf("PrepareLayers: %v, want ErrDiffID", err)
				}
				return
			}
			rootfs, _ := mountFor(t, s, img)
			if b, err := os.ReadFile(filepath.Join(rootfs, "etc", "a")); err != nil || string(b) != "a2" {
				t.Errorf("etc/a: %q %v", b, err)
			}
		})
	}
}
