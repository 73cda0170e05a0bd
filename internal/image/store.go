// Package image is knast's image store and registry client: pull and push against OCI registries,
// a content-addressed store on disk, save/load of archives, login/logout, references, platform choice
// and garbage collection.
//
// The store lives under one directory:
//
//	DIR/oci/      an OCI image layout (oci-layout, index.json, blobs/sha256/...) that skopeo and umoci read;
//	              index.json names every image with org.opencontainers.image.ref.name
//	DIR/images.db the names (internal/store), rewritten together with index.json under one lock
//	DIR/tmp/      partial downloads, verified before they are renamed into blobs/
//	DIR/gc.lock   taken shared by everything that adds blobs and exclusively by garbage collection
//
// A blob only ever enters blobs/ by a rename after its size and digest were checked, so blobs/ never
// holds a corrupt or partial file.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// DefaultDir is the default --storage directory.
const DefaultDir = "/var/lib/knast"

// Errors callers can test for with errors.Is.
var (
	// ErrUnknownImage: the name is not in the store, or the registry does not know it.
	ErrUnknownImage = errors.New("unknown image")
	// ErrPlatform: no manifest for the wanted platform.
	ErrPlatform = errors.New("no manifest for platform")
	// ErrAuth: the registry refused the credentials (or asked for some).
	ErrAuth = errors.New("authentication required or refused")
	// ErrDigestMismatch: content does not match its digest or size.
	ErrDigestMismatch = errors.New("digest mismatch")
)

const refNameAnnotation = "org.opencontainers.image.ref.name"

// Store is the image store under one directory. It holds no open files; many knast processes may use
// the same directory at once.
type Store struct {
	dir string
	oci string
	tmp string
	db  *store.ImageStore
	log *slog.Logger
}

// Open creates (if needed) and opens the store under dir.
func Open(dir string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		dir: dir,
		oci: filepath.Join(dir, "oci"),
		tmp: filepath.Join(dir, "tmp"),
		db:  store.OpenImages(dir, 30*time.Second),
		log: log,
	}
	for _, d := range []string{filepath.Join(s.oci, "blobs", "sha256"), s.tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	if err := createOnce(filepath.Join(s.oci, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return nil, err
	}
	empty, _ := json.Marshal(v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []v1.Descriptor{}})
	if err := createOnce(filepath.Join(s.oci, "index.json"), empty); err != nil {
		return nil, err
	}
	return s, nil
}

// Dir returns the store's directory.
func (s *Store) Dir() string { return s.dir }

// LayoutDir returns the OCI image layout directory (DIR/oci).
func (s *Store) LayoutDir() string { return s.oci }

// createOnce writes path with data unless it exists; link(2) makes the creation atomic, so a
// concurrent reader never sees an empty file.
func createOnce(path string, data []byte) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".new-*")
	if err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("image store: write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("image store: write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("image store: create %s: %w", path, err)
	}
	return nil
}

// writeAtomic replaces path with data by rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".new-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// parseDigest checks a sha256 digest string, so it can name a file safely.
func parseDigest(d string) (v1.Hash, error) {
	h, err := v1.NewHash(d)
	if err != nil {
		return v1.Hash{}, fmt.Errorf("digest %q: %w", d, err)
	}
	if h.Algorithm != "sha256" {
		return v1.Hash{}, fmt.Errorf("digest %q: only sha256 is supported", d)
	}
	return h, nil
}

func (s *Store) blobPath(h v1.Hash) string { return filepath.Join(s.oci, "blobs", h.Algorithm, h.Hex) }

// HasBlob reports whether the blob is in the store.
func (s *Store) HasBlob(digest string) bool {
	h, err := parseDigest(digest)
	if err != nil {
		return false
	}
	_, err = os.Stat(s.blobPath(h))
	return err == nil
}

// OpenBlob opens a blob of the store. The reader checks the content against the digest: a read that
// reaches the end of a blob that does not match returns an error wrapping ErrDigestMismatch.
func (s *Store) OpenBlob(digest string) (io.ReadCloser, error) {
	h, err := parseDigest(digest)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(s.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: not in the store: %w", digest, fs.ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("open blob: %w", err)
	}
	return &verifyReader{f: f, want: h, h: sha256.New()}, nil
}

type verifyReader struct {
	f    *os.File
	want v1.Hash
	h    hash.Hash
}

func (r *verifyReader) Read(p []byte) (int, error) {
	n, err := r.f.Read(p)
	r.h.Write(p[:n])
	if errors.Is(err, io.EOF) {
		if got := hex.EncodeToString(r.h.Sum(nil)); got != r.want.Hex {
			return n, fmt.Errorf("blob %s in the store: content has sha256:%s: %w", r.want, got, ErrDigestMismatch)
		}
	}
	return n, err
}

func (r *verifyReader) Close() error { return r.f.Close() }

// readBlob reads a small blob (manifest, index, config) whole, verified.
func (s *Store) readBlob(digest string) ([]byte, error) {
	rc, err := s.OpenBlob(digest)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", digest, err)
	}
	return b, nil
}

// fetchFunc returns the blob's content from offset on; it returns the offset the reader really starts
// at (0 when the source cannot resume).
type fetchFunc func(ctx context.Context, offset int64) (io.ReadCloser, int64, error)

// partialError marks a download that stopped part-way: the partial file is kept, a retry resumes it.
type partialError struct{ err error }

func (e partialError) Error() string { return e.err.Error() }
func (e partialError) Unwrap() error { return e.err }

// putBlob stores the blob h of the given size (-1: unknown) from fetch, unless it is already there.
// The bytes go to DIR/tmp/<hex>.partial, locked so concurrent knast processes fetching the same blob
// take turns (the second finds the blob done); size and digest are checked before the rename into
// blobs/. A mismatch removes the partial file; an interrupted transfer keeps it for a resume.
func (s *Store) putBlob(ctx context.Context, h v1.Hash, size int64, fetch fetchFunc, prog func(int64)) (skipped bool, err error) {
	final := s.blobPath(h)
	if _, err := os.Stat(final); err == nil {
		return true, nil
	}
	partial := filepath.Join(s.tmp, h.Hex+".partial")
	f, err := lockPartial(ctx, partial)
	if err != nil {
		return false, err
	}
	defer f.Close()
	if _, err := os.Stat(final); err == nil {
		os.Remove(partial)
		return true, nil
	}

	hasher := sha256.New()
	off, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	if size >= 0 && off > size {
		off = 0
	}
	if off > 0 {
		// Resume: the hash needs the bytes already on disk.
		if _, err := io.Copy(hasher, io.NewSectionReader(f, 0, off)); err != nil {
			return false, fmt.Errorf("blob %s: rehash partial: %w", h, err)
		}
	}
	rc, start, err := fetch(ctx, off)
	if err != nil {
		if off == 0 {
			os.Remove(partial) // nothing fetched: leave no empty partial behind
		}
		return false, err
	}
	defer rc.Close()
	if start != off {
		hasher.Reset()
		off = 0
	}
	if err := f.Truncate(off); err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	var src io.Reader = rc
	if size >= 0 {
		// One byte more than expected is enough to tell an oversized blob.
		src = io.LimitReader(rc, size-off+1)
	}
	n, err := io.Copy(io.MultiWriter(f, hasher, progressWriter(prog)), contextReader{ctx, src})
	total := off + n
	if err != nil {
		if ctx.Err() != nil {
			return false, fmt.Errorf("blob %s: %w", h, ctx.Err())
		}
		return false, partialError{fmt.Errorf("blob %s: download interrupted after %d bytes: %w", h, total, err)}
	}
	if size >= 0 && total != size {
		os.Remove(partial)
		if total < size {
			return false, partialError{fmt.Errorf("blob %s: got %d bytes, want %d: %w", h, total, size, io.ErrUnexpectedEOF)}
		}
		return false, fmt.Errorf("blob %s: larger than its descriptor's %d bytes: %w", h, size, ErrDigestMismatch)
	}
	if got := hex.EncodeToString(hasher.Sum(nil)); got != h.Hex {
		os.Remove(partial)
		return false, fmt.Errorf("blob %s: content has sha256:%s: %w", h, got, ErrDigestMismatch)
	}
	if err := f.Sync(); err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	if err := os.Chmod(partial, 0o644); err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	if err := os.Rename(partial, final); err != nil {
		return false, fmt.Errorf("blob %s: %w", h, err)
	}
	return false, nil
}

// putBlobBytes stores a blob held in memory (manifests, configs).
func (s *Store) putBlobBytes(ctx context.Context, b []byte) (v1.Hash, error) {
	sum := sha256.Sum256(b)
	h := v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
	_, err := s.putBlob(ctx, h, int64(len(b)), func(context.Context, int64) (io.ReadCloser, int64, error) {
		return io.NopCloser(strings.NewReader(string(b))), 0, nil
	}, nil)
	return h, err
}

func progressWriter(prog func(int64)) io.Writer {
	if prog == nil {
		return io.Discard
	}
	return writerFunc(func(p []byte) (int, error) { prog(int64(len(p))); return len(p), nil })
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// contextReader stops a copy once ctx is done.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// lockPartial opens and exclusively locks the partial file at path. The lock holder may rename or
// remove the file, so after locking the open file must still be the one at path, or we start over.
func lockPartial(ctx context.Context, path string) (*os.File, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("partial blob: %w", err)
		}
		if err := flock(ctx, f, unix.LOCK_EX); err != nil {
			f.Close()
			return nil, fmt.Errorf("partial blob %s: %w", path, err)
		}
		var a, b unix.Stat_t
		if unix.Fstat(int(f.Fd()), &a) == nil && unix.Stat(path, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return f, nil
		}
		f.Close()
	}
}

// flock takes a lock on f, polling so that ctx can cancel the wait.
func flock(ctx context.Context, f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("flock: %w", err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// lockGC takes DIR/gc.lock: shared (how=LOCK_SH) while blobs are added and until the name that
// references them is recorded, exclusive (LOCK_EX) while unreferenced blobs are deleted.
func (s *Store) lockGC(ctx context.Context, how int) (func(), error) {
	f, err := os.OpenFile(filepath.Join(s.dir, "gc.lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("image store lock: %w", err)
	}
	if err := flock(ctx, f, how); err != nil {
		f.Close()
		return nil, fmt.Errorf("image store lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// writeIndex rewrites DIR/oci/index.json from the records; it runs inside the images.db write
// transaction so both agree.
func (s *Store) writeIndex(recs []store.Image) error {
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json", Manifests: []v1.Descriptor{}}
	for _, r := range recs {
		h, err := parseDigest(r.ManifestDigest)
		if err != nil {
			return fmt.Errorf("image %s: %w", r.Name, err)
		}
		d := v1.Descriptor{
			MediaType:   typesMediaType(r.ManifestMediaType),
			Size:        r.ManifestSize,
			Digest:      h,
			Annotations: map[string]string{refNameAnnotation: r.Name},
		}
		if p, err := ParsePlatform(r.Platform); err == nil && r.Platform != "" {
			d.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		}
		idx.Manifests = append(idx.Manifests, d)
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return fmt.Errorf("encode index.json: %w", err)
	}
	return writeAtomic(filepath.Join(s.oci, "index.json"), b)
}

// record stores names under the images.db lock, rewriting index.json in the same transaction.
func (s *Store) record(ctx context.Context, fn func(tx *store.ImageTx) error) error {
	return s.db.Update(ctx, func(tx *store.ImageTx) error {
		if err := fn(tx); err != nil {
			return err
		}
		all, err := tx.All()
		if err != nil {
			return err
		}
		return s.writeIndex(all)
	})
}
