package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

const imagesDBName = "images.db"

var bucketImages = []byte("images")

// Image is one name in the image store: a normalized reference (e.g. docker.io/library/busybox:latest)
// and what it points to in the OCI layout beside the database.
type Image struct {
	Name string `json:"name"`
	// Digest is what the name was resolved to: an index (manifest list) or a manifest.
	Digest    string `json:"digest"`
	MediaType string `json:"mediaType"`
	// ManifestDigest is the platform's image manifest (equal to Digest when Digest is a manifest).
	ManifestDigest    string `json:"manifestDigest"`
	ManifestMediaType string `json:"manifestMediaType"`
	ManifestSize      int64  `json:"manifestSize"`
	// Platform is os/arch[/variant] of the manifest.
	Platform string `json:"platform"`
	// Size is the manifest, config and layer blobs added up (compressed, as stored).
	Size int64 `json:"size"`
	// Created is the image config's creation time, or the time the name was stored when the config
	// has none.
	Created time.Time `json:"created"`
	// Source is the repository the image was pulled from (e.g. 127.0.0.1:5000/app), used to offer
	// cross-repository blob mounts on push; empty for loaded or tagged images.
	Source string `json:"source,omitempty"`
}

// ImageStore is a handle on DIR/images.db. Like Store it holds no open file: every operation opens the
// database for one transaction, so many knast processes can share it.
type ImageStore struct {
	dir     string
	timeout time.Duration
}

// OpenImages returns an ImageStore for dir without touching the file system; timeout bounds the wait
// for the database lock (<= 0 means 5s).
func OpenImages(dir string, timeout time.Duration) *ImageStore {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &ImageStore{dir: dir, timeout: timeout}
}

// Path returns the database file's path, DIR/images.db.
func (s *ImageStore) Path() string { return filepath.Join(s.dir, imagesDBName) }

// ImageTx is the view of the images bucket inside one write transaction.
type ImageTx struct{ b *bolt.Bucket }

// Get returns the record for name, or an error wrapping ErrNotExist.
func (tx *ImageTx) Get(name string) (Image, error) {
	v := tx.b.Get([]byte(name))
	if v == nil {
		return Image{}, fmt.Errorf("image %q: %w", name, ErrNotExist)
	}
	var im Image
	if err := json.Unmarshal(v, &im); err != nil {
		return Image{}, fmt.Errorf("decode image %q: %w", name, err)
	}
	return im, nil
}

// Put stores (or replaces) the record named im.Name.
func (tx *ImageTx) Put(im Image) error {
	if im.Name == "" {
		return errors.New("image name must not be empty")
	}
	if im.Digest == "" || im.ManifestDigest == "" {
		return fmt.Errorf("image %q: digest must not be empty", im.Name)
	}
	data, err := json.Marshal(&im)
	if err != nil {
		return fmt.Errorf("encode image %q: %w", im.Name, err)
	}
	return tx.b.Put([]byte(im.Name), data)
}

// Delete removes the record for name; it fails with ErrNotExist if there is none.
func (tx *ImageTx) Delete(name string) error {
	if tx.b.Get([]byte(name)) == nil {
		return fmt.Errorf("image %q: %w", name, ErrNotExist)
	}
	return tx.b.Delete([]byte(name))
}

// All returns every record sorted by name.
func (tx *ImageTx) All() ([]Image, error) { return allImages(tx.b) }

func allImages(b *bolt.Bucket) ([]Image, error) {
	out := []Image{}
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		var im Image
		if err := json.Unmarshal(v, &im); err != nil {
			return fmt.Errorf("decode image %q: %w", k, err)
		}
		out = append(out, im)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, err
}

// Image returns the record for name, or an error wrapping ErrNotExist.
func (s *ImageStore) Image(ctx context.Context, name string) (Image, error) {
	var im Image
	err := s.view(ctx, func(b *bolt.Bucket) error {
		if b == nil {
			return fmt.Errorf("image %q: %w", name, ErrNotExist)
		}
		var err error
		im, err = (&ImageTx{b}).Get(name)
		return err
	})
	return im, err
}

// Images returns every record sorted by name; a missing database holds none.
func (s *ImageStore) Images(ctx context.Context) ([]Image, error) {
	var out []Image
	err := s.view(ctx, func(b *bolt.Bucket) error {
		var err error
		out, err = allImages(b)
		return err
	})
	return out, err
}

// Update runs fn in one write transaction under the database's exclusive lock, creating the database
// when missing. Whatever fn does besides (the image package rewrites the OCI index.json) happens under
// the same lock, so other knast processes see both change together. An error from fn rolls back.
func (s *ImageStore) Update(ctx context.Context, fn func(*ImageTx) error) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("image store: create %s: %w", s.dir, err)
	}
	db, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := checkSchema(tx, s.Path()); err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return fmt.Errorf("image store %s: %w", s.Path(), err)
		}
		if meta.Get(keySchema) == nil {
			if err := meta.Put(keySchema, []byte(fmt.Sprint(schemaVersion))); err != nil {
				return fmt.Errorf("image store %s: %w", s.Path(), err)
			}
		}
		b, err := tx.CreateBucketIfNotExists(bucketImages)
		if err != nil {
			return fmt.Errorf("image store %s: %w", s.Path(), err)
		}
		return fn(&ImageTx{b})
	})
	return closeDB(db, err)
}

func (s *ImageStore) view(ctx context.Context, fn func(*bolt.Bucket) error) error {
	if fi, err := os.Stat(s.Path()); errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return fn(nil)
	} else if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	db, err := s.open(ctx, true)
	if err != nil {
		return err
	}
	err = db.View(func(tx *bolt.Tx) error {
		if err := checkSchema(tx, s.Path()); err != nil {
			return err
		}
		return fn(tx.Bucket(bucketImages))
	})
	return closeDB(db, err)
}

// open is Store.open for images.db, but synced: image names outlive reboots, unlike container records.
func (s *ImageStore) open(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	return openDB(ctx, "image store", s.Path(), s.timeout, readOnly, false)
}
