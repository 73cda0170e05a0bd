package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// cacheEntry is what a step made: a layer (its directory under build/layers and its blob in the image
// store) or nothing (Empty).
type cacheEntry struct {
	Empty     bool   `json:"empty,omitempty"`
	DiffID    string `json:"diffID,omitempty"`
	Digest    string `json:"digest,omitempty"`
	Size      int64  `json:"size,omitempty"`
	MediaType string `json:"mediaType,omitempty"`
}

// stepCache is the build cache: one small JSON file per step key under DIR/cache and the layer
// directories under DIR/layers, named by the key.
type stepCache struct{ dir string }

func (c stepCache) entryPath(key string) string { return filepath.Join(c.dir, "cache", key+".json") }

// layerDir is the directory of the layer a step with this key made: a short name, since overlayfs
// takes every lower directory in one mount option.
func (c stepCache) layerDir(key string) string { return filepath.Join(c.dir, "layers", key[:24]) }

func (c stepCache) get(key string) (*cacheEntry, bool) {
	b, err := os.ReadFile(c.entryPath(key))
	if err != nil {
		return nil, false
	}
	var e cacheEntry
	if json.Unmarshal(b, &e) != nil {
		return nil, false
	}
	if _, err := os.Stat(c.layerDir(key)); err != nil {
		return nil, false
	}
	return &e, true
}

// put records e for key; the layer directory must already be in place.
func (c stepCache) put(key string, e cacheEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	p := c.entryPath(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	tmp := p + ".new"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	return nil
}

// adopt moves a finished upper directory to the step's layer directory. A directory already there
// (a --no-cache rebuild, or a concurrent build of the same step) is moved to the trash first, which
// sweep empties.
func (c stepCache) adopt(key, upper string) (string, error) {
	dst := c.layerDir(key)
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		return "", fmt.Errorf("build cache: %w", err)
	}
	err := os.Rename(upper, dst)
	if err != nil && (errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY)) {
		if err := c.discard(dst); err != nil {
			return "", err
		}
		err = os.Rename(upper, dst)
	}
	if err != nil {
		return "", fmt.Errorf("build cache: %w", err)
	}
	return dst, nil
}

// discard moves the directory p into the trash in one rename: whole, and out of every build's way.
func (c stepCache) discard(p string) error {
	trash := filepath.Join(c.dir, "trash")
	if err := os.MkdirAll(trash, 0o700); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	bin, err := os.MkdirTemp(trash, "dir-")
	if err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	if err := os.Rename(p, filepath.Join(bin, "dir")); err != nil {
		return fmt.Errorf("build cache: %w", err)
	}
	return nil
}

// sweep removes what adopt put in the trash (in the background of a build: it only costs disk time).
func (c stepCache) sweep() {
	ents, err := os.ReadDir(filepath.Join(c.dir, "trash"))
	if err != nil {
		return
	}
	for _, e := range ents {
		os.RemoveAll(filepath.Join(c.dir, "trash", e.Name()))
	}
}

// hashKey derives a cache key from its parts.
func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s\n", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}
