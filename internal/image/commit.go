package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// HoldBlobs keeps garbage collection away until the returned func is called, so blobs written with
// WriteBlob survive until Commit names an image that references them.
func (s *Store) HoldBlobs(ctx context.Context) (func(), error) {
	return s.lockGC(ctx, unix.LOCK_SH)
}

// WriteBlob stores the bytes fn writes as a blob and returns its sha256 digest and size. The bytes go
// to a temporary file first and enter blobs/ by a rename, like a pulled blob. Callers hold HoldBlobs.
func (s *Store) WriteBlob(ctx context.Context, fn func(w io.Writer) error) (string, int64, error) {
	tmp, err := os.CreateTemp(s.tmp, writePrefix+"*")
	if err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	defer os.Remove(tmp.Name())
	// Held until the file is closed: SweepWrites and prune leave a live writer's file alone.
	if err := unix.Flock(int(tmp.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		tmp.Close()
		return "", 0, fmt.Errorf("write blob: lock %s: %w", tmp.Name(), err)
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(tmp, h)}
	err = fn(cw)
	if err == nil {
		err = ctx.Err()
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	d := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", 0, fmt.Errorf("write blob: %w", err)
	}
	if _, err := os.Stat(s.blobPath(d)); err == nil {
		return d.String(), cw.n, nil
	}
	if err := os.Rename(tmp.Name(), s.blobPath(d)); err != nil {
		return "", 0, fmt.Errorf("write blob %s: %w", d, err)
	}
	return d.String(), cw.n, nil
}

// writeBytes stores b as a blob through WriteBlob. A commit's config and manifest are new bytes (they
// carry the build's time), so a commit killed midway must not leave them as a resumable partial named
// by their digest, which no later commit would finish: WriteBlob's temp file is swept by the next
// build (SweepWrites) and by prune.
func (s *Store) writeBytes(ctx context.Context, b []byte) (v1.Hash, error) {
	d, _, err := s.WriteBlob(ctx, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
	if err != nil {
		return v1.Hash{}, err
	}
	return v1.NewHash(d)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// CommitOptions describe an image made outside a registry (by knast build).
type CommitOptions struct {
	// Names are the references to record (normalized like a pull would); at least one.
	Names []string
	// Config is the image configuration JSON (its rootfs.diff_ids match Layers).
	Config []byte
	// Layers are blobs of the store, lowest first.
	Layers []ocispec.Descriptor
	// Platform is os/arch[/variant] of the image.
	Platform string
	// Created is recorded as the names' creation time.
	Created time.Time
}

// Commit writes the config and an OCI image manifest for o.Layers into the store and points every
// name of o.Names at it. It returns the manifest digest. Every layer must already be a blob of the
// store; callers hold HoldBlobs from writing the layers until Commit returns.
func (s *Store) Commit(ctx context.Context, o CommitOptions) (string, error) {
	if len(o.Names) == 0 {
		return "", errors.New("commit: no name given")
	}
	names := make([]string, 0, len(o.Names))
	for _, n := range o.Names {
		nn, err := NormalizeName(n)
		if err != nil {
			return "", fmt.Errorf("commit: %w", err)
		}
		names = append(names, nn)
	}
	size := int64(len(o.Config))
	for _, l := range o.Layers {
		if !s.HasBlob(string(l.Digest)) {
			return "", fmt.Errorf("commit: layer %s is not in the store", l.Digest)
		}
		size += l.Size
	}
	cfgDigest, err := s.writeBytes(ctx, o.Config)
	if err != nil {
		return "", fmt.Errorf("commit: config: %w", err)
	}
	m := ocispec.Manifest{
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.Digest(cfgDigest.String()), Size: int64(len(o.Config))},
		Layers:    o.Layers,
	}
	m.SchemaVersion = 2
	raw, err := json.Marshal(m)
	if err != nil {
		return "", fmt.Errorf("commit: manifest: %w", err)
	}
	md, err := s.writeBytes(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("commit: manifest: %w", err)
	}
	size += int64(len(raw))
	created := o.Created
	if created.IsZero() {
		created = time.Now().UTC()
	}
	err = s.record(ctx, func(tx *store.ImageTx) error {
		for _, n := range names {
			rec := store.Image{
				Name: n, Digest: md.String(), MediaType: string(types.OCIManifestSchema1),
				ManifestDigest: md.String(), ManifestMediaType: string(types.OCIManifestSchema1), ManifestSize: int64(len(raw)),
				Platform: o.Platform, Size: size, Created: created,
			}
			if err := tx.Put(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("commit: %w", err)
	}
	return md.String(), nil
}

// writePrefix names WriteBlob's files in the store's tmp directory.
const writePrefix = "write-"

// SweepWrites removes the files of WriteBlob calls whose process died midway (a live writer holds
// its file's lock). Unlike a pull's partial downloads, nothing resumes them.
func (s *Store) SweepWrites() {
	entries, err := os.ReadDir(s.tmp)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), writePrefix) {
			continue
		}
		p := filepath.Join(s.tmp, e.Name())
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			os.Remove(p)
		}
		f.Close()
	}
}
