package testutil

// This file writes images for tests: a rootfs directory as a layer tar, and an OCI image layout archive
// holding that layer (what `knast image load`, `ctr images import` and `podman load` read). It mirrors
// integration/clients/image.go so that packages other than clients can build images too.

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Media types of the OCI image spec (v1.0), written as constants to avoid a dependency on image-spec.
const (
	mediaTypeIndex    = "application/vnd.oci.image.index.v1+json"
	mediaTypeManifest = "application/vnd.oci.image.manifest.v1+json"
	mediaTypeConfig   = "application/vnd.oci.image.config.v1+json"
	mediaTypeLayerGz  = "application/vnd.oci.image.layer.v1.tar+gzip"
)

// layerEpoch is the modification time of every layer entry, so a rootfs always gives the same digest.
var layerEpoch = time.Unix(1_000_000_000, 0).UTC()

// WriteLayer writes the tree under rootfs as an uncompressed tar (a root filesystem layer, or the input
// of `podman import`): entries in lexical order, owners and modes kept, times fixed. Only regular
// files, directories and symlinks are allowed.
func WriteLayer(w io.Writer, rootfs string) error {
	tw := tar.NewWriter(w)
	var paths []string
	err := filepath.WalkDir(rootfs, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != rootfs {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("walk %s: %w", rootfs, err)
	}
	sort.Strings(paths)
	for _, p := range paths {
		if err := addEntry(tw, rootfs, p); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("layer of %s: %w", rootfs, err)
	}
	return nil
}

func addEntry(tw *tar.Writer, rootfs, p string) error {
	fi, err := os.Lstat(p)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	var link string
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		if link, err = os.Readlink(p); err != nil {
			return fmt.Errorf("layer: %w", err)
		}
	case fi.Mode().IsRegular(), fi.IsDir():
	default:
		return fmt.Errorf("layer: %s: unsupported file type %s", p, fi.Mode().Type())
	}
	hdr, err := tar.FileInfoHeader(fi, link)
	if err != nil {
		return fmt.Errorf("layer: %s: %w", p, err)
	}
	rel, err := filepath.Rel(rootfs, p)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	hdr.Name = filepath.ToSlash(rel)
	if fi.IsDir() {
		hdr.Name += "/"
	}
	hdr.ModTime, hdr.AccessTime, hdr.ChangeTime = layerEpoch, time.Time{}, time.Time{}
	hdr.Uname, hdr.Gname = "", ""
	hdr.Format = tar.FormatPAX
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("layer: %s: %w", p, err)
	}
	if !fi.Mode().IsRegular() {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("layer: %w", err)
	}
	defer f.Close()
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("layer: %s: %w", p, err)
	}
	return nil
}

// ImageConfig is what WriteOCIArchive records about the image besides its one layer.
type ImageConfig struct {
	// Name is the full reference, e.g. "localhost/busybox:latest"; its tag also becomes the
	// org.opencontainers.image.ref.name annotation.
	Name string
	Env  []string
	Cmd  []string
	// Arch defaults to runtime.GOARCH; OS is always linux.
	Arch string
}

type descriptor struct {
	MediaType   string            `json:"mediaType"`
	Digest      string            `json:"digest"`
	Size        int64             `json:"size"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Platform    *platform         `json:"platform,omitempty"`
}

type platform struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
}

// WriteOCIArchive writes an OCI image layout (oci-layout, index.json, blobs/sha256/...) as a tar to w:
// one gzip layer made from rootfs, the image config, the manifest and an index naming it. This is
// the archive format `ctr images import` and `podman load` read.
func WriteOCIArchive(w io.Writer, rootfs string, c ImageConfig) error {
	if c.Name == "" {
		return errors.New("oci archive: empty image name")
	}
	tag := "latest"
	if i := strings.LastIndexByte(c.Name, ':'); i > strings.LastIndexByte(c.Name, '/') {
		tag = c.Name[i+1:]
	}
	arch := c.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}

	var raw bytes.Buffer
	if err := WriteLayer(&raw, rootfs); err != nil {
		return err
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		return fmt.Errorf("oci archive: gzip layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("oci archive: gzip layer: %w", err)
	}

	cfg := map[string]any{
		"architecture": arch,
		"os":           "linux",
		"created":      layerEpoch.Format(time.RFC3339),
		"config":       map[string]any{"Env": c.Env, "Cmd": c.Cmd},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{digestOf(raw.Bytes())}},
		"history":      []map[string]any{{"created": layerEpoch.Format(time.RFC3339), "created_by": "knast integration/clients"}},
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("oci archive: config: %w", err)
	}
	manifest := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeManifest,
		"config":        descFor(mediaTypeConfig, cfgJSON),
		"layers":        []descriptor{descFor(mediaTypeLayerGz, gz.Bytes())},
	}
	manJSON, err := json.Marshal(manifest)
	if err != nil {
		return fmt.Errorf("oci archive: manifest: %w", err)
	}
	manDesc := descFor(mediaTypeManifest, manJSON)
	manDesc.Platform = &platform{Architecture: arch, OS: "linux"}
	manDesc.Annotations = map[string]string{
		"io.containerd.image.name":          c.Name,
		"org.opencontainers.image.ref.name": tag,
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     mediaTypeIndex,
		"manifests":     []descriptor{manDesc},
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return fmt.Errorf("oci archive: index: %w", err)
	}

	tw := tar.NewWriter(w)
	files := []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
		{blobPath(gz.Bytes()), gz.Bytes()},
		{blobPath(cfgJSON), cfgJSON},
		{blobPath(manJSON), manJSON},
	}
	for _, dir := range []string{"blobs/", "blobs/sha256/"} {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: layerEpoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("oci archive: %w", err)
		}
	}
	for _, f := range files {
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.name, Mode: 0o644, Size: int64(len(f.data)), ModTime: layerEpoch}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("oci archive: %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.data); err != nil {
			return fmt.Errorf("oci archive: %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("oci archive: %w", err)
	}
	return nil
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

func blobPath(b []byte) string {
	return "blobs/sha256/" + strings.TrimPrefix(digestOf(b), "sha256:")
}

func descFor(mediaType string, b []byte) descriptor {
	return descriptor{MediaType: mediaType, Digest: digestOf(b), Size: int64(len(b))}
}
