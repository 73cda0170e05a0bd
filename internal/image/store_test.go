package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

func TestParsing(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"busybox", "docker.io/library/busybox:latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36"},
		{"docker.io/library/busybox", "docker.io/library/busybox:latest"},
		{"index.docker.io/foo/bar:x", "docker.io/foo/bar:x"},
		{"127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"},
		{"quay.io/x/y@sha256:" + strings.Repeat("a", 64), "quay.io/x/y@sha256:" + strings.Repeat("a", 64)},
		{"UPPER", ""},
	} {
		got, err := NormalizeName(tc.in)
		if (err != nil) != (tc.want == "") || got != tc.want {
			t.Errorf("NormalizeName(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in   string
		want Platform
		ok   bool
	}{
		{"linux/amd64", Platform{"linux", "amd64", ""}, true},
		{"linux/arm/v7", Platform{"linux", "arm", "v7"}, true},
		{"linux", Platform{}, false},
		{"linux/arm/", Platform{}, false},
		{"a/b/c/d", Platform{}, false},
	} {
		got, err := ParsePlatform(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParsePlatform(%q) = %v, %v", tc.in, got, err)
		}
	}
	if p, _ := ParsePlatform(""); p != HostPlatform() {
		t.Errorf("default platform %v", p)
	}
	if !(Platform{"linux", "arm64", "v8"}).matches(Platform{"linux", "arm64", ""}) || (Platform{"linux", "arm", "v7"}).matches(Platform{"linux", "arm", "v6"}) {
		t.Error("platform matching")
	}
}

func TestOpenBlobVerifies(t *testing.T) {
	s := newStore(t)
	h, err := s.putBlobBytes(context.Background(), []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.blobPath(h), []byte("HELLO"), 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := s.OpenBlob(h.String())
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("read of a tampered blob: %v", err)
	}
	for _, bad := range []string{"sha256:../../etc", "md5:abc", "nonsense"} {
		if _, err := s.OpenBlob(bad); err == nil {
			t.Errorf("OpenBlob(%q) succeeded", bad)
		}
	}
}

func TestTagRemovePrune(t *testing.T) {
	host, _ := newRegistry(t, nil)
	base := randomImage(t, 2, amd64)
	extra := randomImage(t, 1, amd64)
	ls, _ := extra.Layers()
	derived, err := mutate.AppendLayers(base, ls...)
	if err != nil {
		t.Fatal(err)
	}
	push(t, host+"/t/base:1", base)
	push(t, host+"/t/derived:1", derived)
	s := newStore(t)
	ctx := context.Background()
	for _, r := range []string{host + "/t/base:1", host + "/t/derived:1"} {
		if _, err := s.Pull(ctx, r, pullOpts("")); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.Tag(ctx, host+"/t/base:1", "localhost/mine:v2"); err != nil || n != "localhost/mine:v2" {
		t.Fatalf("Tag = %s, %v", n, err)
	}
	if _, err := s.Tag(ctx, "nothere", "x"); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("tag of unknown image: %v", err)
	}
	// Untagging one of two names of base removes no blob.
	if _, rep, err := s.Remove(ctx, []string{host + "/t/base:1"}); err != nil || len(rep.Blobs) != 0 {
		t.Fatalf("rm base:1 = %+v, %v", rep, err)
	}
	// Removing derived removes its own layer, manifest and config; base's layers stay.
	_, rep, err := s.Remove(ctx, []string{host + "/t/derived:1"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{digestOf(t, derived): true, digestOf(t, ls[0]): true}
	cfg, _ := derived.ConfigName()
	want[cfg.String()] = true
	if len(rep.Blobs) != 3 {
		t.Errorf("removed %v, want %v", rep.Blobs, want)
	}
	for _, d := range rep.Blobs {
		if !want[d] {
			t.Errorf("removed %s", d)
		}
	}
	blobs := blobsOf(t, s)
	for _, d := range imageBlobs(t, base) {
		if !blobs[d] {
			t.Errorf("base blob %s removed", d)
		}
	}
	if _, _, err := s.Remove(ctx, []string{"nothere"}); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("rm of unknown image: %v", err)
	}
	// A stray blob and a stale partial go with prune.
	if _, err := s.putBlobBytes(ctx, []byte("stray")); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(s.tmp, "abc.partial"), []byte("x"), 0o600)
	rep, err = s.Prune(ctx)
	if err != nil || len(rep.Blobs) != 1 || rep.Bytes != 5 {
		t.Errorf("prune = %+v, %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(s.tmp, "abc.partial")); err == nil {
		t.Error("stale partial kept")
	}
	if _, _, err := s.Remove(ctx, []string{"localhost/mine:v2"}); err != nil {
		t.Fatal(err)
	}
	if b := blobsOf(t, s); len(b) != 0 {
		t.Errorf("blobs left after removing every image: %v", b)
	}
}

func TestPushSkipsAndMounts(t *testing.T) {
	// The in-process registry shares blobs between repositories; hide them from dst/ for the first
	// push, as a real registry would.
	var hide atomic.Bool
	host, log := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hide.Load() && r.Method == http.MethodHead && strings.HasPrefix(r.URL.Path, "/v2/dst/") && strings.Contains(r.URL.Path, "/blobs/") {
				http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := randomImage(t, 2, amd64)
	push(t, host+"/src/app:v1", img)
	s := newStore(t)
	ctx := context.Background()
	if _, err := s.Pull(ctx, host+"/src/app:v1", pullOpts("")); err != nil {
		t.Fatal(err)
	}
	log.reset()
	hide.Store(true)
	po := PushOptions{Insecure: true, RetryDelay: 1, Keychain: anon}
	d, err := s.Push(ctx, host+"/src/app:v1", host+"/dst/app:v1", po)
	if err != nil {
		t.Fatal(err)
	}
	if d != digestOf(t, img) {
		t.Errorf("pushed %s, want %s", d, digestOf(t, img))
	}
	if n := log.count(http.MethodPost, "from=src"); n != 2 {
		t.Errorf("%d mount requests, want one per layer", n)
	}
	r, _ := name.ParseReference(host+"/dst/app:v1", name.Insecure)
	got, err := remote.Get(r)
	if err != nil || got.Digest.String() != d {
		t.Fatalf("registry has %v, %v", got, err)
	}
	// Pushing again uploads no blob.
	hide.Store(false)
	log.reset()
	if _, err := s.Push(ctx, host+"/src/app:v1", host+"/dst/app:v1", po); err != nil {
		t.Fatal(err)
	}
	if n := log.count(http.MethodPatch, "/blobs/uploads/") + log.count(http.MethodPost, "/blobs/uploads/"); n != 0 {
		t.Errorf("second push started %d uploads", n)
	}
	if _, err := s.Push(ctx, "nothere", "", po); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("push of unknown image: %v", err)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	host, _ := newRegistry(t, nil)
	img := randomImage(t, 2, amd64)
	push(t, host+"/t/app:v1", img)
	src := newStore(t)
	ctx := context.Background()
	if _, err := src.Pull(ctx, host+"/t/app:v1", pullOpts("")); err != nil {
		t.Fatal(err)
	}
	cfgName, _ := img.ConfigName()
	for _, format := range []string{FormatOCIArchive, FormatDockerArchive} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := src.Save(ctx, &buf, []string{host + "/t/app:v1"}, format); err != nil {
				t.Fatal(err)
			}
			dst := newStore(t)
			names, err := dst.Load(ctx, &buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(names) != 1 || names[0] != host+"/t/app:v1" {
				t.Errorf("loaded %v", names)
			}
			got, err := dst.Resolve(ctx, host+"/t/app:v1", "")
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Manifest.Config.Digest) != cfgName.String() || len(got.Layers) != 2 {
				t.Errorf("loaded config %s, %d layers", got.Manifest.Config.Digest, len(got.Layers))
			}
			if format == FormatOCIArchive && got.ManifestDigest != digestOf(t, img) {
				t.Errorf("manifest %s, want %s", got.ManifestDigest, digestOf(t, img))
			}
			blobsOf(t, dst)
		})
	}
	if err := src.Save(ctx, io.Discard, []string{host + "/t/app:v1"}, "zip"); err == nil {
		t.Error("unknown format accepted")
	}
	if _, err := newStore(t).Load(ctx, strings.NewReader("not a tar")); err == nil {
		t.Error("garbage loaded")
	}
}

// TestConcurrentPullProcesses: four knast-like processes pull the same image into one store at once.
func TestConcurrentPullProcesses(t *testing.T) {
	if ref := os.Getenv("KNAST_TEST_PULL_REF"); ref != "" {
		return
	}
	host, _ := newRegistry(t, nil)
	img := randomImage(t, 4, amd64)
	push(t, host+"/t/app:v1", img)
	dir := t.TempDir()
	var cmds []*exec.Cmd
	var outs []*bytes.Buffer
	for range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperPull$", "-test.count=1")
		cmd.Env = append(os.Environ(), "KNAST_TEST_PULL_REF="+host+"/t/app:v1", "KNAST_TEST_PULL_DIR="+dir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds, outs = append(cmds, cmd), append(outs, &out)
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Errorf("pull process %d: %v\n%s", i, err, outs[i])
		}
	}
	s, err := Open(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	blobs := blobsOf(t, s)
	for _, d := range imageBlobs(t, img) {
		if !blobs[d] {
			t.Errorf("blob %s missing", d)
		}
	}
	if len(blobs) != 6 {
		t.Errorf("%d blobs, want 6", len(blobs))
	}
	got, err := s.Resolve(context.Background(), host+"/t/app:v1", "")
	if err != nil || got.ManifestDigest != digestOf(t, img) {
		t.Errorf("Resolve = %v, %v", got, err)
	}
	if entries, _ := os.ReadDir(s.tmp); len(entries) != 0 {
		t.Errorf("tmp/ left with %d entries", len(entries))
	}
}

func TestHelperPull(t *testing.T) {
	ref := os.Getenv("KNAST_TEST_PULL_REF")
	if ref == "" {
		t.Skip("helper process of TestConcurrentPullProcesses")
	}
	s, err := Open(os.Getenv("KNAST_TEST_PULL_DIR"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), ref, pullOpts("")); err != nil {
		fmt.Fprintln(os.Stderr, err)
		t.Fatal(err)
	}
}

var _ = v1.Hash{}
