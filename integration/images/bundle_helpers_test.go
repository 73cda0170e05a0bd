//go:build linux

package images

import (
	"bytes"
	"io"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/knast/knast/internal/testutil"
)

// requireBundleVerbs fails plainly when cmd/knast does not wire `bundle` (main.go) or `run --image`
// (run.go), instead of letting every assertion fail on "unknown command".
func requireBundleVerbs(w *regWorld, runImage bool) {
	w.t.Helper()
	if r := w.knast("bundle", "--help"); strings.Contains(r.stderr, "unknown command") {
		w.t.Fatalf("knast bundle is not registered: cmd/knast/main.go's commands() needs \"bundle\": bundleCmd()")
	}
	if r := w.knast("run", "--help"); runImage && !strings.Contains(r.stdout+r.stderr, "--image") {
		w.t.Fatalf("knast run has no --image: cmd/knast/run.go must call imageRunFlags and runImage (cmd/knast/bundle.go)")
	}
}

// dirLayer is an OCI gzip layer of the tree under dir.
func dirLayer(t *testing.T, dir string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	if err := testutil.WriteLayer(&buf, dir); err != nil {
		t.Fatal(err)
	}
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// ociImage is an OCI image of the given layers (bottom first) and run config, for the host's
// architecture.
func ociImage(t *testing.T, cfg v1.Config, layers ...v1.Layer) v1.Image {
	t.Helper()
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1), &v1.ConfigFile{
		OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"},
	})
	if err != nil {
		t.Fatal(err)
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		t.Fatal(err)
	}
	if img, err = mutate.Config(img, cfg); err != nil {
		t.Fatal(err)
	}
	return img
}

// deleteImage deletes ref's manifest from the registry (it must allow deletes), so only a store can
// still provide the image.
func deleteImage(t *testing.T, ref, digest string) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(r.Context().Digest(digest), remote.WithContext(t.Context())); err != nil {
		t.Fatalf("delete %s@%s: %v", ref, digest, err)
	}
}

// pushImage pushes img to ref on a plain-HTTP loopback registry and returns its manifest digest.
func pushImage(t *testing.T, ref string, img v1.Image) string {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img, remote.WithContext(t.Context())); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}
