package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// Archive formats of Save and Load.
const (
	FormatOCIArchive    = "oci-archive"
	FormatDockerArchive = "docker-archive"
)

// Save writes the stored images refs to w as one archive: an OCI image layout as a tar (oci-archive,
// names in org.opencontainers.image.ref.name) or `docker save`'s format (docker-archive).
func (s *Store) Save(ctx context.Context, w io.Writer, refs []string, format string) error {
	if len(refs) == 0 {
		return errors.New("save: no image given")
	}
	var recs []store.Image
	for _, ref := range refs {
		rec, err := s.lookup(ctx, ref)
		if err != nil {
			return err
		}
		recs = append(recs, rec)
	}
	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return err
	}
	defer unlock()
	switch format {
	case FormatOCIArchive, "":
		return s.saveOCI(w, recs)
	case FormatDockerArchive:
		m := map[name.Reference]v1.Image{}
		for _, rec := range recs {
			ref, err := name.ParseReference(rec.Name)
			if err != nil {
				return fmt.Errorf("save %s: %w", rec.Name, err)
			}
			img, err := s.v1Image(rec.ManifestDigest)
			if err != nil {
				return fmt.Errorf("save %s: %w", rec.Name, err)
			}
			m[ref] = img
		}
		if err := tarball.MultiRefWrite(m, w); err != nil {
			return fmt.Errorf("save docker-archive: %w", err)
		}
		return nil
	default:
		return fmt.Errorf("save: format %q is not one of %s, %s", format, FormatOCIArchive, FormatDockerArchive)
	}
}

func (s *Store) saveOCI(w io.Writer, recs []store.Image) error {
	tw := tar.NewWriter(w)
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json"}
	var blobs []string
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			blobs = append(blobs, d)
		}
	}
	for _, rec := range recs {
		img, err := s.loadImage(rec.Name, rec.ManifestDigest)
		if err != nil {
			return err
		}
		h, _ := parseDigest(rec.ManifestDigest)
		d := v1.Descriptor{MediaType: typesMediaType(rec.ManifestMediaType), Size: rec.ManifestSize, Digest: h,
			Annotations: map[string]string{refNameAnnotation: rec.Name}}
		if p, err := ParsePlatform(rec.Platform); err == nil && rec.Platform != "" {
			d.Platform = &v1.Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
		}
		idx.Manifests = append(idx.Manifests, d)
		add(rec.ManifestDigest)
		add(string(img.Manifest.Config.Digest))
		for _, l := range img.Layers {
			add(l.Digest)
		}
	}
	idxJSON, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	now := time.Now()
	put := func(name string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: now}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := put("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := put("index.json", idxJSON); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, d := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755, ModTime: now}); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	for _, d := range blobs {
		if err := s.saveBlob(tw, d, now); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func (s *Store) saveBlob(tw *tar.Writer, d string, now time.Time) error {
	h, err := parseDigest(d)
	if err != nil {
		return err
	}
	fi, err := os.Stat(s.blobPath(h))
	if err != nil {
		return fmt.Errorf("save: blob %s: %w", d, err)
	}
	rc, err := s.OpenBlob(d)
	if err != nil {
		return err
	}
	defer rc.Close()
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "blobs/sha256/" + h.Hex, Mode: 0o644, Size: fi.Size(), ModTime: now}); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if _, err := io.Copy(tw, rc); err != nil {
		return fmt.Errorf("save: blob %s: %w", d, err)
	}
	return nil
}

// Load reads an oci-archive or docker-archive from r (the format is detected), stores its images
// and returns their names. Every blob is verified against its digest.
func (s *Store) Load(ctx context.Context, r io.Reader) ([]string, error) {
	work, err := os.MkdirTemp(s.tmp, "load-")
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	defer os.RemoveAll(work)
	archive := filepath.Join(work, "archive.tar")
	f, err := os.Create(archive)
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	_, err = io.Copy(f, contextReader{ctx, r})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	layout := filepath.Join(work, "layout")
	kind, err := extractArchive(archive, layout)
	if err != nil {
		return nil, err
	}
	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	var recs []store.Image
	switch kind {
	case FormatOCIArchive:
		recs, err = s.loadOCI(ctx, layout)
	case FormatDockerArchive:
		recs, err = s.loadDocker(ctx, archive)
	}
	if err != nil {
		return nil, err
	}
	if err := s.record(ctx, func(tx *store.ImageTx) error {
		for _, rec := range recs {
			if err := tx.Put(rec); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	names := make([]string, len(recs))
	for i, rec := range recs {
		names[i] = rec.Name
	}
	return names, nil
}

// extractArchive unpacks the OCI layout files of an archive into dir (only regular files and
// directories, only inside dir) and says which format it is.
func extractArchive(archive, dir string) (string, error) {
	f, err := os.Open(archive)
	if err != nil {
		return "", fmt.Errorf("load: %w", err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	kind := ""
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return "", fmt.Errorf("load: not a tar archive: %w", err)
		}
		clean := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if clean == "." || strings.HasPrefix(clean, "../") || clean == ".." || path.IsAbs(clean) {
			continue
		}
		switch clean {
		case "oci-layout":
			kind = FormatOCIArchive
		case "manifest.json":
			if kind == "" {
				kind = FormatDockerArchive
			}
		}
		if hdr.Typeflag != tar.TypeReg {
			continue
		}
		p := filepath.Join(dir, filepath.FromSlash(clean))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return "", fmt.Errorf("load: %w", err)
		}
		out, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return "", fmt.Errorf("load: %w", err)
		}
		_, err = io.Copy(out, tr)
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return "", fmt.Errorf("load: %s: %w", clean, err)
		}
	}
	if kind == "" {
		return "", errors.New("load: archive is neither an OCI layout (no oci-layout) nor a docker-archive (no manifest.json)")
	}
	return kind, nil
}

// archiveName picks the name an archive gives an image: a full reference, or a name:tag.
func archiveName(ann map[string]string) (string, error) {
	for _, key := range []string{"io.containerd.image.name", refNameAnnotation} {
		v := ann[key]
		if v == "" || !strings.ContainsAny(v, "/:@") {
			continue
		}
		return NormalizeName(v)
	}
	return "", errors.New("load: an image in the archive has no name (org.opencontainers.image.ref.name must be a full reference)")
}

func (s *Store) loadOCI(ctx context.Context, dir string) ([]store.Image, error) {
	raw, err := os.ReadFile(filepath.Join(dir, "index.json"))
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	idx, err := v1.ParseIndexManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("load: index.json: %w", err)
	}
	var recs []store.Image
	for _, d := range idx.Manifests {
		nm, err := archiveName(d.Annotations)
		if err != nil {
			return nil, err
		}
		man := d
		if d.MediaType.IsIndex() {
			if err := s.copyFromLayout(ctx, dir, d); err != nil {
				return nil, err
			}
			sub, err := os.ReadFile(layoutBlob(dir, d.Digest))
			if err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
			child, err := v1.ParseIndexManifest(bytes.NewReader(sub))
			if err != nil {
				return nil, fmt.Errorf("load: index %s: %w", d.Digest, err)
			}
			if man, err = choosePlatform(child, HostPlatform(), nm); err != nil {
				return nil, err
			}
		} else if !d.MediaType.IsImage() {
			return nil, fmt.Errorf("load: %s: %s is not an image", nm, d.MediaType)
		}
		size, cfg, err := s.copyImageFromLayout(ctx, dir, man)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", nm, err)
		}
		recs = append(recs, newRecord(nm, d, man, size, cfg))
	}
	return recs, nil
}

func newRecord(nm string, top, man v1.Descriptor, size int64, cfg *v1.ConfigFile) store.Image {
	created := cfg.Created.Time
	if created.IsZero() {
		created = time.Now().UTC()
	}
	return store.Image{
		Name: nm, Digest: top.Digest.String(), MediaType: string(top.MediaType),
		ManifestDigest: man.Digest.String(), ManifestMediaType: string(man.MediaType), ManifestSize: man.Size,
		Platform: Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}.String(),
		Size:     size, Created: created,
	}
}

func layoutBlob(dir string, h v1.Hash) string {
	return filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
}

// copyFromLayout stores one blob of an extracted layout, verified.
func (s *Store) copyFromLayout(ctx context.Context, dir string, d v1.Descriptor) error {
	if _, err := parseDigest(d.Digest.String()); err != nil {
		return err
	}
	if d.Size < 0 {
		return fmt.Errorf("blob %s: declared size %d is negative", d.Digest, d.Size)
	}
	_, err := s.putBlob(ctx, d.Digest, d.Size, func(context.Context, int64) (io.ReadCloser, int64, error) {
		f, err := os.Open(layoutBlob(dir, d.Digest))
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s missing from the archive: %w", d.Digest, err)
		}
		return f, 0, nil
	}, nil)
	return err
}

func (s *Store) copyImageFromLayout(ctx context.Context, dir string, man v1.Descriptor) (int64, *v1.ConfigFile, error) {
	raw, err := os.ReadFile(layoutBlob(dir, man.Digest))
	if err != nil {
		return 0, nil, fmt.Errorf("manifest %s: %w", man.Digest, err)
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return 0, nil, fmt.Errorf("manifest %s: %w", man.Digest, err)
	}
	size := man.Size
	for _, d := range append([]v1.Descriptor{m.Config}, m.Layers...) {
		if err := s.copyFromLayout(ctx, dir, d); err != nil {
			return 0, nil, err
		}
		size += d.Size
	}
	cfgRaw, err := s.readBlob(m.Config.Digest.String())
	if err != nil {
		return 0, nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return 0, nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if err := s.copyFromLayout(ctx, dir, man); err != nil {
		return 0, nil, err
	}
	return size, cfg, nil
}

func (s *Store) loadDocker(ctx context.Context, archive string) ([]store.Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(archive) }
	tm, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("load docker-archive: %w", err)
	}
	var recs []store.Image
	for _, desc := range tm {
		if len(desc.RepoTags) == 0 {
			return nil, errors.New("load: an image in the docker-archive has no RepoTags")
		}
		tag, err := name.NewTag(desc.RepoTags[0])
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		img, err := tarball.Image(opener, &tag)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", tag, err)
		}
		man, size, cfg, err := s.importImage(ctx, img)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", tag, err)
		}
		for _, t := range desc.RepoTags {
			nm, err := NormalizeName(t)
			if err != nil {
				return nil, fmt.Errorf("load: %w", err)
			}
			recs = append(recs, newRecord(nm, man, man, size, cfg))
		}
	}
	return recs, nil
}

// importImage stores a go-containerregistry image: config, layers, then the manifest.
func (s *Store) importImage(ctx context.Context, img v1.Image) (v1.Descriptor, int64, *v1.ConfigFile, error) {
	cfgRaw, err := img.RawConfigFile()
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	if _, err := s.putBlobBytes(ctx, cfgRaw); err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	size := int64(len(cfgRaw))
	layers, err := img.Layers()
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return v1.Descriptor{}, 0, nil, err
		}
		n, err := l.Size()
		if err != nil {
			return v1.Descriptor{}, 0, nil, err
		}
		if _, err := s.putBlob(ctx, h, n, func(context.Context, int64) (io.ReadCloser, int64, error) {
			rc, err := l.Compressed()
			return rc, 0, err
		}, nil); err != nil {
			return v1.Descriptor{}, 0, nil, err
		}
		size += n
	}
	raw, err := img.RawManifest()
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	mt, err := img.MediaType()
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	h, err := s.putBlobBytes(ctx, raw)
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		return v1.Descriptor{}, 0, nil, err
	}
	return v1.Descriptor{MediaType: mt, Digest: h, Size: int64(len(raw))}, size + int64(len(raw)), cfg, nil
}
