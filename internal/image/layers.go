package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The layer cache lives under STORAGE/layers:
//
//	<chain hex>/diff        one layer as an overlayfs upper dir: its files, overlay whiteouts (char
//	                        0:0) for what it deletes, copied-up parent dirs
//	<chain hex>/layer.json  its diff ID, chain ID and parent chain ID
//	.tmp-<chain hex>-*      a layer being unpacked; renamed into place whole, so a complete name
//	                        never holds half a layer
//	mounts/<key>.json       one per mounted bundle rootfs: its path and chain IDs, so GC keeps them
//
// A layer is keyed by its chain ID (not its diff ID) because it is unpacked on an overlay of the
// layers below it: the kernel then turns OCI deletions into overlay whiteouts, follows symlinks of
// lower layers, links to lower files and copies parent directories up with their real metadata,
// exactly as a copy would see them. The result depends on the lower layers, which the chain ID
// names.

// OverlayAnnotation marks a bundle's config.json whose rootfs is an overlay mount made by knast.
// Its value is the bundle-relative directory holding the upper and work dirs; deleting the
// container unmounts the rootfs and removes that directory (internal/container).
const OverlayAnnotation = "org.knast.bundle.overlay"

// OverlayStateDir is the value knast gives OverlayAnnotation: DIR/.knast-overlay/{upper,work}.
const OverlayStateDir = ".knast-overlay"

// ErrNoOverlay means overlayfs cannot serve here (no kernel support, a filesystem that cannot hold an
// upper dir, no privilege); callers fall back to copying the layers.
var ErrNoOverlay = errors.New("overlayfs unavailable")

// ChainIDs returns the OCI chain ID of each prefix of diffIDs: ChainID(L0) = DiffID(L0),
// ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln)).
func ChainIDs(diffIDs []string) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		sum := sha256.Sum256([]byte(out[i-1] + " " + d))
		out[i] = "sha256:" + hex.EncodeToString(sum[:])
	}
	return out
}

func (s *Store) layersDir() string { return filepath.Join(s.dir, "layers") }

// layerDir is the cache directory of a chain ID (checked, so it names a file safely).
func (s *Store) layerDir(chain string) (string, error) {
	h, err := parseDigest(chain)
	if err != nil {
		return "", fmt.Errorf("layer cache: %w", err)
	}
	return filepath.Join(s.layersDir(), h.Hex), nil
}

// layerMeta is layer.json.
type layerMeta struct {
	DiffID  string `json:"diffID"`
	ChainID string `json:"chainID"`
	Parent  string `json:"parent,omitempty"`
}

// mountRecord is mounts/<key>.json.
type mountRecord struct {
	Rootfs string   `json:"rootfs"`
	Chains []string `json:"chains"`
}

func (s *Store) mountRecordPath(rootfs string) string {
	sum := sha256.Sum256([]byte(rootfs))
	return filepath.Join(s.layersDir(), "mounts", hex.EncodeToString(sum[:16])+".json")
}

// PrepareLayers makes sure every layer of img is unpacked in the layer cache (verified against its
// diff ID) and returns the layers' diff directories, lowest first. Concurrent callers unpack each
// layer once.
func (s *Store) PrepareLayers(ctx context.Context, img *Image) ([]string, error) {
	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	return s.prepareLayers(ctx, img)
}

func (s *Store) prepareLayers(ctx context.Context, img *Image) ([]string, error) {
	return s.prepareLayersWhen(ctx, img, nil)
}

// prepareLayersWhen is prepareLayers for blobs still arriving: ready(ctx, i), when not nil,
// returns once layer i's blob is in the store (or why it never will be).
func (s *Store) prepareLayersWhen(ctx context.Context, img *Image, ready func(context.Context, int) error) ([]string, error) {
	diffIDs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		diffIDs[i] = l.DiffID
	}
	chains := ChainIDs(diffIDs)
	lds := make([]string, len(chains))
	var missing []int
	for i, c := range chains {
		ld, err := s.layerDir(c)
		if err != nil {
			return nil, err
		}
		lds[i] = ld
		if _, err := os.Stat(filepath.Join(ld, "diff")); errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, i)
		} else if err != nil {
			return nil, fmt.Errorf("layer cache: %w", err)
		}
	}
	// Missing layers are decompressed ahead, the next one while this one is extracted: each
	// extraction needs the layers below it, but decompression does not.
	ahead := map[int]*readAhead{}
	defer func() {
		for _, ra := range ahead {
			ra.Close()
		}
	}()
	startAhead := func(k int) {
		if k >= len(missing) || ahead[missing[k]] != nil {
			return
		}
		i, d := missing[k], img.Layers[missing[k]].Digest
		ahead[i] = startReadAhead(func() (io.ReadCloser, error) {
			if ready != nil {
				if err := ready(ctx, i); err != nil {
					return nil, err
				}
			}
			return s.OpenBlob(d)
		})
	}
	dirs := make([]string, 0, len(chains))
	for i, c := range chains {
		if k := slices.Index(missing, i); k >= 0 {
			startAhead(k)
			startAhead(k + 1)
			parent := ""
			if i > 0 {
				parent = chains[i-1]
			}
			meta := layerMeta{DiffID: img.Layers[i].DiffID, ChainID: c, Parent: parent}
			err := s.addLayer(ctx, ahead[i], meta, lds[i], dirs)
			ahead[i].Close()
			delete(ahead, i)
			if err != nil {
				return nil, fmt.Errorf("image %s: layer %d (%s): %w", img.Ref, i, img.Layers[i].Digest, err)
			}
		}
		dirs = append(dirs, filepath.Join(lds[i], "diff"))
	}
	return dirs, nil
}

// addLayer unpacks one layer (its uncompressed tar, layer) into the cache at ld, on an overlay of lowers (lowest first). The work
// happens in a temp dir under a per-layer lock; a second process waiting for the lock finds the
// layer done.
func (s *Store) addLayer(ctx context.Context, layer io.Reader, meta layerMeta, ld string, lowers []string) error {
	hexName := filepath.Base(ld)
	lock, err := lockPartial(ctx, filepath.Join(s.tmp, "layer-"+hexName+".lock"))
	if err != nil {
		return err
	}
	defer func() {
		os.Remove(lock.Name())
		lock.Close()
	}()
	if _, err := os.Stat(ld); err == nil {
		return nil
	}
	if err := os.MkdirAll(s.layersDir(), 0o700); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	tmp, err := os.MkdirTemp(s.layersDir(), ".tmp-"+hexName+"-")
	if err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	done := false
	defer func() {
		if !done {
			removeLayerTemp(tmp)
		}
	}()
	if err := unpackOnOverlay(ctx, tmp, layer, meta.DiffID, lowers); err != nil {
		return err
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("layer.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "layer.json"), b, 0o644); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	if err := os.Rename(tmp, ld); err != nil {
		return fmt.Errorf("layer cache: %w", err)
	}
	done = true
	return nil
}

// MountRootfs mounts an overlay of img's layers (unpacked into the cache first where missing) at
// rootfs, an existing empty directory, with its upper and work dirs in stateDir (created). The mount
// is recorded so that GC keeps its layers while it exists. ErrNoOverlay means the caller should copy
// instead; nothing is left mounted then.
func (s *Store) MountRootfs(ctx context.Context, img *Image, rootfs, stateDir string) (err error) {
	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	if err := overlaySupported(); err != nil {
		return err
	}
	lowers, err := s.prepareLayers(ctx, img)
	if err != nil {
		return err
	}
	if len(lowers) == 0 {
		return fmt.Errorf("image %s has no layers: %w", img.Ref, ErrNoOverlay)
	}
	abs, err := filepath.Abs(rootfs)
	if err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := mountRootfs(abs, stateDir, lowers); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			UnmountRootfs(abs, stateDir)
		}
	}()
	diffIDs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		diffIDs[i] = l.DiffID
	}
	rec := mountRecord{Rootfs: abs, Chains: ChainIDs(diffIDs)}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("mount record: %w", err)
	}
	p := s.mountRecordPath(abs)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("mount record: %w", err)
	}
	return writeAtomic(p, b)
}

// UnmountRootfs undoes MountRootfs: it unmounts the overlay at rootfs (if one is mounted there) and
// removes stateDir. It is idempotent; nothing is removed while rootfs is still mounted.
func UnmountRootfs(rootfs, stateDir string) error {
	if err := unmountOverlay(rootfs); err != nil {
		return err
	}
	if err := os.RemoveAll(stateDir); err != nil {
		return fmt.Errorf("remove overlay dirs: %w", err)
	}
	return nil
}

// removeLayerTemp removes a layer temp dir, unmounting what a crashed unpack left mounted in it.
func removeLayerTemp(dir string) error {
	if err := unmountOverlay(filepath.Join(dir, "merged")); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

// liveChains returns the chain IDs of the stored image configs in configs.
func (s *Store) liveChains(configs map[string]bool) map[string]bool {
	chains := map[string]bool{}
	for d := range configs {
		raw, err := s.readBlob(d)
		if err != nil {
			continue
		}
		var cfg struct {
			RootFS struct {
				DiffIDs []string `json:"diff_ids"`
			} `json:"rootfs"`
		}
		if json.Unmarshal(raw, &cfg) != nil {
			continue
		}
		for _, c := range ChainIDs(cfg.RootFS.DiffIDs) {
			chains[c] = true
		}
	}
	return chains
}

// pruneLayers deletes cached layers that no stored image and no mounted bundle uses, mount records
// of rootfs no longer mounted, and temp dirs of crashed unpacks. The caller holds gc.lock
// exclusively.
func (s *Store) pruneLayers(configs map[string]bool) ([]string, error) {
	removed := []string{}
	chains := s.liveChains(configs)
	mdir := filepath.Join(s.layersDir(), "mounts")
	recs, err := os.ReadDir(mdir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return removed, fmt.Errorf("prune layers: %w", err)
	}
	for _, e := range recs {
		p := filepath.Join(mdir, e.Name())
		var rec mountRecord
		b, err := os.ReadFile(p)
		if err == nil {
			err = json.Unmarshal(b, &rec)
		}
		if err == nil && isOverlayMount(rec.Rootfs) {
			for _, c := range rec.Chains {
				chains[c] = true
			}
			continue
		}
		os.Remove(p)
	}
	entries, err := os.ReadDir(s.layersDir())
	if errors.Is(err, fs.ErrNotExist) {
		return removed, nil
	}
	if err != nil {
		return removed, fmt.Errorf("prune layers: %w", err)
	}
	for _, e := range entries {
		n := e.Name()
		p := filepath.Join(s.layersDir(), n)
		switch {
		case strings.HasPrefix(n, ".tmp-"):
			// Unpacks hold gc.lock shared, so under our exclusive lock every temp dir is a crash's.
			if err := removeLayerTemp(p); err != nil {
				return removed, fmt.Errorf("prune layers: %w", err)
			}
		case len(n) == 64 && e.IsDir():
			c := "sha256:" + n
			if chains[c] {
				continue
			}
			// Renamed first: a crash in RemoveAll must not leave half a layer under its name.
			gone := filepath.Join(s.layersDir(), ".tmp-"+n+"-rm")
			if err := os.Rename(p, gone); err != nil {
				return removed, fmt.Errorf("prune layers: %w", err)
			}
			if err := os.RemoveAll(gone); err != nil {
				return removed, fmt.Errorf("prune layers: %w", err)
			}
			removed = append(removed, c)
		}
	}
	return removed, nil
}
