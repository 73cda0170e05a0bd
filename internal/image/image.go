package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/knast/knast/internal/store"
)

// Image is an image of the store: its name, what the name points at, and the platform manifest with
// its config.
type Image struct {
	// Ref is the normalized name, e.g. docker.io/library/busybox:latest.
	Ref string
	// Digest is what the name points at (an index or a manifest); ManifestDigest is the platform's
	// manifest.
	Digest, ManifestDigest string
	Platform               string
	Manifest               ocispec.Manifest
	Config                 ocispec.Image
	Layers                 []Layer
	// RawManifest and RawConfig are the stored bytes (their digests are ManifestDigest and
	// Manifest.Config.Digest).
	RawManifest, RawConfig []byte
}

// Layer is one layer blob of an image.
type Layer struct {
	Digest    string
	DiffID    string
	MediaType string
	Size      int64
}

func typesMediaType(s string) types.MediaType { return types.MediaType(s) }

func isIndex(mt string) bool {
	return types.MediaType(mt) == types.OCIImageIndex || types.MediaType(mt) == types.DockerManifestList
}

// Resolve returns the stored image named ref for platform ("" means the platform it was pulled for).
// It never touches the network.
func (s *Store) Resolve(ctx context.Context, ref string, platform string) (*Image, error) {
	rec, err := s.lookup(ctx, ref)
	if err != nil {
		return nil, err
	}
	mdigest := rec.ManifestDigest
	if platform != "" {
		want, err := ParsePlatform(platform)
		if err != nil {
			return nil, err
		}
		have, _ := ParsePlatform(rec.Platform)
		if !want.matches(have) {
			mdigest, err = s.localPlatformManifest(rec, want)
			if err != nil {
				return nil, err
			}
		}
	}
	img, err := s.loadImage(rec.Name, mdigest)
	if err != nil {
		return nil, err
	}
	img.Digest = rec.Digest
	if platform == "" {
		img.Platform = rec.Platform
	} else {
		img.Platform = platform
	}
	return img, nil
}

// localPlatformManifest finds another platform's manifest in a stored index, if its blobs are here.
func (s *Store) localPlatformManifest(rec store.Image, want Platform) (string, error) {
	notHere := fmt.Errorf("image %s is stored for %s, not %s (pull it with --platform %s): %w", rec.Name, rec.Platform, want, want, ErrPlatform)
	if !isIndex(rec.MediaType) {
		return "", notHere
	}
	raw, err := s.readBlob(rec.Digest)
	if err != nil {
		return "", err
	}
	idx, err := v1.ParseIndexManifest(strings.NewReader(string(raw)))
	if err != nil {
		return "", fmt.Errorf("image %s: index: %w", rec.Name, err)
	}
	for _, d := range idx.Manifests {
		if want.matches(platformOf(d.Platform)) && s.HasBlob(d.Digest.String()) {
			return d.Digest.String(), nil
		}
	}
	return "", notHere
}

// lookup finds the record for ref: a name (normalized like a pull would) or the digest a name points
// at.
func (s *Store) lookup(ctx context.Context, ref string) (store.Image, error) {
	if strings.HasPrefix(ref, "sha256:") {
		recs, err := s.db.Images(ctx)
		if err != nil {
			return store.Image{}, err
		}
		for _, r := range recs {
			if r.Digest == ref || r.ManifestDigest == ref {
				return r, nil
			}
		}
		return store.Image{}, fmt.Errorf("image %s: %w", ref, ErrUnknownImage)
	}
	n, err := NormalizeName(ref)
	if err != nil {
		return store.Image{}, err
	}
	rec, err := s.db.Image(ctx, n)
	if errors.Is(err, store.ErrNotExist) {
		return store.Image{}, fmt.Errorf("image %s: not in the store (pull it first): %w", n, ErrUnknownImage)
	}
	return rec, err
}

// loadImage reads a manifest and its config from the store.
func (s *Store) loadImage(ref, manifestDigest string) (*Image, error) {
	raw, err := s.readBlob(manifestDigest)
	if err != nil {
		return nil, fmt.Errorf("image %s: manifest: %w", ref, err)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("image %s: manifest %s: %w", ref, manifestDigest, err)
	}
	if m.Config.Digest == "" {
		return nil, fmt.Errorf("image %s: manifest %s has no config", ref, manifestDigest)
	}
	rawCfg, err := s.readBlob(string(m.Config.Digest))
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", ref, err)
	}
	var cfg ocispec.Image
	if err := json.Unmarshal(rawCfg, &cfg); err != nil {
		return nil, fmt.Errorf("image %s: config %s: %w", ref, m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("image %s: config lists %d layers, manifest %d", ref, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	img := &Image{Ref: ref, ManifestDigest: manifestDigest, Manifest: m, Config: cfg, RawManifest: raw, RawConfig: rawCfg}
	for i, l := range m.Layers {
		img.Layers = append(img.Layers, Layer{Digest: string(l.Digest), DiffID: string(cfg.RootFS.DiffIDs[i]), MediaType: l.MediaType, Size: l.Size})
	}
	return img, nil
}

// Summary is one line of `knast images`.
type Summary struct {
	Name           string    `json:"name"`
	Repository     string    `json:"repository"`
	Tag            string    `json:"tag"`
	Digest         string    `json:"digest"`
	ManifestDigest string    `json:"manifestDigest"`
	Platform       string    `json:"platform"`
	Size           int64     `json:"size"`
	Created        time.Time `json:"created"`
}

// List returns every stored name.
func (s *Store) List(ctx context.Context) ([]Summary, error) {
	recs, err := s.db.Images(ctx)
	if err != nil {
		return nil, err
	}
	out := []Summary{}
	for _, r := range recs {
		repo, tag := splitName(r.Name)
		out = append(out, Summary{Name: r.Name, Repository: repo, Tag: tag, Digest: r.Digest, ManifestDigest: r.ManifestDigest, Platform: r.Platform, Size: r.Size, Created: r.Created})
	}
	return out, nil
}

// splitName splits a normalized name into repository and tag ("<none>" for a digest name).
func splitName(n string) (string, string) {
	if i := strings.LastIndexByte(n, '@'); i >= 0 {
		return n[:i], "<none>"
	}
	if i := strings.LastIndexByte(n, ':'); i > strings.LastIndexByte(n, '/') {
		return n[:i], n[i+1:]
	}
	return n, ""
}

// Tag gives the stored image src the additional name dst.
func (s *Store) Tag(ctx context.Context, src, dst string) (string, error) {
	rec, err := s.lookup(ctx, src)
	if err != nil {
		return "", err
	}
	n, err := NormalizeName(dst)
	if err != nil {
		return "", err
	}
	if strings.Contains(n, "@") {
		return "", fmt.Errorf("tag %s: the new name must be a tag, not a digest", dst)
	}
	rec.Name = n
	return n, s.record(ctx, func(tx *store.ImageTx) error { return tx.Put(rec) })
}
