package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// GCReport says what garbage collection deleted.
type GCReport struct {
	Blobs []string `json:"blobs"`
	Bytes int64    `json:"bytes"`
	// Layers are the chain IDs of unpacked layers removed from the layer cache.
	Layers []string `json:"layers"`
}

// Remove deletes the names refs (names, or a digest for every name pointing at it) and then the
// blobs no image references any more.
func (s *Store) Remove(ctx context.Context, refs []string) ([]string, GCReport, error) {
	var removed []string
	err := s.record(ctx, func(tx *store.ImageTx) error {
		all, err := tx.All()
		if err != nil {
			return err
		}
		for _, ref := range refs {
			var names []string
			if strings.HasPrefix(ref, "sha256:") {
				for _, r := range all {
					if r.Digest == ref || r.ManifestDigest == ref {
						names = append(names, r.Name)
					}
				}
			} else if n, err := NormalizeName(ref); err != nil {
				return err
			} else if _, err := tx.Get(n); err == nil {
				names = append(names, n)
			}
			if len(names) == 0 {
				return fmt.Errorf("image %s: not in the store: %w", ref, ErrUnknownImage)
			}
			for _, n := range names {
				if err := tx.Delete(n); err != nil && !errors.Is(err, store.ErrNotExist) {
					return err
				}
				removed = append(removed, n)
			}
		}
		return nil
	})
	if err != nil {
		return nil, GCReport{}, err
	}
	rep, err := s.Prune(ctx)
	return removed, rep, err
}

// Prune deletes every blob that no name references (through index, manifest, config and layers),
// and partial downloads no process is working on.
func (s *Store) Prune(ctx context.Context) (GCReport, error) {
	rep := GCReport{Blobs: []string{}, Layers: []string{}}
	unlock, err := s.lockGC(ctx, unix.LOCK_EX)
	if err != nil {
		return rep, err
	}
	defer unlock()
	recs, err := s.db.Images(ctx)
	if err != nil {
		return rep, err
	}
	live, configs := map[string]bool{}, map[string]bool{}
	var roots []string
	for _, r := range recs {
		roots = append(roots, r.Digest, r.ManifestDigest)
	}
	idx, err := s.readIndexJSON()
	if err != nil {
		return rep, err
	}
	for _, d := range idx.Manifests {
		roots = append(roots, d.Digest.String())
	}
	for _, r := range roots {
		if err := s.mark(r, live, configs); err != nil {
			return rep, err
		}
	}
	dir := filepath.Join(s.oci, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return rep, fmt.Errorf("prune: %w", err)
	}
	for _, e := range entries {
		d := "sha256:" + e.Name()
		if live[d] {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			return rep, fmt.Errorf("prune: %w", err)
		}
		rep.Blobs = append(rep.Blobs, d)
		rep.Bytes += info.Size()
	}
	s.pruneTmp()
	layers, err := s.pruneLayers(configs)
	rep.Layers = layers
	return rep, err
}

// pruneTmp removes partial downloads that no process holds locked.
func (s *Store) pruneTmp() {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(s.tmp, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.RemoveAll(p)
		}
		f.Close()
	}
}

func (s *Store) readIndexJSON() (*v1.IndexManifest, error) {
	f, err := os.Open(filepath.Join(s.oci, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	defer f.Close()
	idx, err := v1.ParseIndexManifest(f)
	if err != nil {
		return nil, fmt.Errorf("index.json: %w", err)
	}
	return idx, nil
}

// mark adds d and everything it references (that the store has) to live, and the image configs to
// configs.
func (s *Store) mark(d string, live, configs map[string]bool) error {
	if d == "" || live[d] || !s.HasBlob(d) {
		return nil
	}
	live[d] = true
	raw, err := s.readBlob(d)
	if err != nil {
		return err
	}
	var doc struct {
		Manifests []v1.Descriptor `json:"manifests"`
		Config    *v1.Descriptor  `json:"config"`
		Layers    []v1.Descriptor `json:"layers"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("prune: %s: %w", d, err)
	}
	for _, m := range doc.Manifests {
		if err := s.mark(m.Digest.String(), live, configs); err != nil {
			return err
		}
	}
	if doc.Config != nil {
		live[doc.Config.Digest.String()] = true
		configs[doc.Config.Digest.String()] = true
	}
	for _, l := range doc.Layers {
		live[l.Digest.String()] = true
	}
	return nil
}
