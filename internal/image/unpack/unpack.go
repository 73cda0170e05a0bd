// Package unpack applies OCI image layers (tar streams, plain, gzip or zstd) to a root filesystem
// directory with the image-spec's changeset semantics: whiteouts, opaque directories, hardlinks,
// symlinks, device nodes, owners, modes, times and xattrs.
//
// Every filesystem operation is made relative to a directory fd inside the root, reached by a
// component walk that never follows a symlink out of the root (symlinks resolve as if the root
// were "/"), so a hostile layer cannot write, chmod, chown, link or delete outside it.
// Entry names that are absolute or contain ".." are refused, and the uncompressed size and
// entry count are bounded against decompression bombs.
package unpack

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Defaults applied when Options leaves a limit at zero.
const (
	DefaultMaxBytes   = 64 << 30 // 64 GiB uncompressed
	DefaultMaxEntries = 4 << 20  // about 4 million tar entries
)

var (
	// ErrUnsafePath is returned for entries whose name or link target would leave the root.
	ErrUnsafePath = errors.New("unsafe path in layer")
	// ErrLimit is returned when a layer exceeds Options.MaxBytes or Options.MaxEntries.
	ErrLimit = errors.New("layer exceeds limit")
	// ErrDiffID is returned when a layer's uncompressed content does not match Options.DiffIDs.
	ErrDiffID = errors.New("layer content does not match its diff id")
)

// Options tunes an extraction. The zero value is usable.
type Options struct {
	// MaxBytes bounds the uncompressed tar bytes and, separately, the file content written
	// (sparse files expand) across all layers of one call. 0 means DefaultMaxBytes, <0 no limit.
	MaxBytes int64
	// MaxEntries bounds the number of tar entries across all layers. 0 means DefaultMaxEntries,
	// <0 no limit.
	MaxEntries int64
	// UIDMap and GIDMap map the layer's (container) ids to host ids before lchown, for a rootfs
	// used by a user-namespaced container. Empty maps are the identity; an id outside a
	// non-empty map is an error.
	UIDMap, GIDMap []specs.LinuxIDMapping
	// Rootless skips lchown and char/block device nodes and tolerates EPERM on setxattr, for an
	// unprivileged caller or a target inside a user namespace.
	Rootless bool
	// Log receives warnings (skipped device nodes and xattrs); nil discards them.
	Log *slog.Logger
	// DiffIDs, when set, holds one "sha256:..." per layer: the digest its uncompressed tar must
	// have (the image config's rootfs.diff_ids). A layer that differs fails with ErrDiffID after
	// it was applied, so the caller must discard the root; a shared layer cache relies on it.
	DiffIDs []string
	// Uncompressed says the layers are plain tar streams (already through Decompress, maybe in
	// another goroutine): no compression is detected, so a tar is never decompressed twice.
	Uncompressed bool
}

// Stats reports what an extraction did.
type Stats struct {
	Entries        int64 // tar entries read, whiteouts included
	Bytes          int64 // uncompressed tar bytes read
	SkippedDevices int64 // device nodes not created (Rootless, or mknod not permitted)
	SkippedXattrs  int64 // xattrs not set (unsupported by the filesystem or not permitted)
}

// Apply extracts one layer stream into root, creating root (and its parent 0700) if missing;
// a root it created is removed again when the layer fails.
func Apply(ctx context.Context, root string, layer io.Reader, o Options) error {
	_, err := Extract(ctx, root, []io.Reader{layer}, o)
	return err
}

// Unpack applies layers in order (lowest first) into root, creating root (and its parent 0700)
// if missing; a root it created is removed again when a layer fails.
func Unpack(ctx context.Context, root string, layers []io.Reader, o Options) error {
	_, err := Extract(ctx, root, layers, o)
	return err
}

// Extract is Unpack that also reports what was done; skipped device nodes and xattrs are
// counted here and logged once per call through Options.Log.
func Extract(ctx context.Context, root string, layers []io.Reader, o Options) (Stats, error) {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxEntries == 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if len(o.DiffIDs) > 0 && len(o.DiffIDs) != len(layers) {
		return Stats{}, fmt.Errorf("unpack: %d diff ids for %d layers", len(o.DiffIDs), len(layers))
	}
	st, err := extract(ctx, root, layers, o)
	if o.Log != nil && (st.SkippedDevices > 0 || st.SkippedXattrs > 0) {
		o.Log.Warn("layer entries skipped", "root", root,
			"devices", st.SkippedDevices, "xattrs", st.SkippedXattrs)
	}
	return st, err
}

// budget counts uncompressed bytes against the limit and checks for cancellation.
type budget struct {
	ctx   context.Context
	r     io.Reader
	max   int64
	n     *int64
	limit error
}

func (b *budget) Read(p []byte) (int, error) {
	if err := b.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := b.r.Read(p)
	*b.n += int64(n)
	if b.max >= 0 && *b.n > b.max {
		return n, b.limit
	}
	return n, err
}

var (
	magicGzip = []byte{0x1f, 0x8b}
	magicZstd = []byte{0x28, 0xb5, 0x2f, 0xfd}
	magicXz   = []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
	magicBz2  = []byte("BZh")
)

// Decompress returns the uncompressed stream of a layer (gzip, zstd or plain tar, detected by
// magic). Close releases the decoder; it does not close r.
func Decompress(r io.Reader) (io.ReadCloser, error) {
	dr, done, err := decompress(r)
	if err != nil {
		return nil, err
	}
	return decoder{dr, done}, nil
}

type decoder struct {
	io.Reader
	done func()
}

func (d decoder) Close() error {
	d.done()
	return nil
}

// decompress returns the uncompressed stream of r, detected by magic, and a closer for the
// decoder's resources.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(6)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("read layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(head, magicGzip):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("gzip layer: %w", err)
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(head, magicZstd):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("zstd layer: %w", err)
		}
		return zr, zr.Close, nil
	case bytes.HasPrefix(head, magicXz):
		return nil, nil, errors.New("xz-compressed layer: only gzip, zstd and plain tar are supported")
	case bytes.HasPrefix(head, magicBz2):
		return nil, nil, errors.New("bzip2-compressed layer: only gzip, zstd and plain tar are supported")
	}
	return br, func() {}, nil
}

// mapID maps a container id to the host through m (identity when m is empty).
func mapID(m []specs.LinuxIDMapping, id int) (int, error) {
	if len(m) == 0 {
		return id, nil
	}
	if id < 0 {
		return 0, fmt.Errorf("negative id %d", id)
	}
	for _, e := range m {
		if uint64(id) >= uint64(e.ContainerID) && uint64(id) < uint64(e.ContainerID)+uint64(e.Size) {
			return int(uint64(e.HostID) + uint64(id) - uint64(e.ContainerID)), nil
		}
	}
	return 0, fmt.Errorf("id %d is not in the id mapping", id)
}
