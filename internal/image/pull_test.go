package image

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

var amd64 = v1.Platform{OS: "linux", Architecture: "amd64"}

func TestPullStoresVerifiedImage(t *testing.T) {
	host, log := newRegistry(t, nil)
	img := randomImage(t, 3, amd64)
	push(t, host+"/test/app:v1", img)
	s := newStore(t)
	ctx := context.Background()

	var out bytes.Buffer
	o := pullOpts("linux/amd64")
	o.Progress = &out
	got, err := s.Pull(ctx, host+"/test/app:v1", o)
	if err != nil {
		t.Fatal(err)
	}
	if want := digestOf(t, img); got.ManifestDigest != want || got.Digest != want {
		t.Errorf("pulled %s (%s), want %s", got.ManifestDigest, got.Digest, want)
	}
	if got.Ref != host+"/test/app:v1" || len(got.Layers) != 3 || got.Platform != "linux/amd64" {
		t.Errorf("image = %+v", got)
	}
	blobs := blobsOf(t, s)
	for _, d := range imageBlobs(t, img) {
		if !blobs[d] {
			t.Errorf("blob %s missing", d)
		}
	}
	if !strings.Contains(out.String(), "Copying blob sha256:") || !strings.Contains(out.String(), " done ") {
		t.Errorf("progress lines:\n%s", out.String())
	}

	// index.json names the image for skopeo/umoci.
	idx, err := s.readIndexJSON()
	if err != nil {
		t.Fatal(err)
	}
	if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations[refNameAnnotation] != host+"/test/app:v1" || idx.Manifests[0].Digest.String() != got.ManifestDigest {
		t.Errorf("index.json = %+v", idx.Manifests)
	}
	res, err := s.Resolve(ctx, host+"/test/app:v1", "")
	if err != nil || res.ManifestDigest != got.ManifestDigest || res.Config.Architecture != "amd64" {
		t.Errorf("Resolve = %+v, %v", res, err)
	}

	// A second pull fetches no blob again.
	log.reset()
	if _, err := s.Pull(ctx, host+"/test/app:v1", pullOpts("linux/amd64")); err != nil {
		t.Fatal(err)
	}
	if n := log.count(http.MethodGet, "/blobs/"); n != 0 {
		t.Errorf("second pull fetched %d blobs", n)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].Tag != "v1" || list[0].Size <= 3*2048 {
		t.Errorf("List = %+v, %v", list, err)
	}
}

func TestPullErrors(t *testing.T) {
	host, _ := newRegistry(t, nil)
	push(t, host+"/test/app:v1", randomImage(t, 1, amd64))
	s := newStore(t)
	for _, tc := range []struct {
		ref, platform string
		want          error
		msg           string
	}{
		{host + "/test/nothere:v1", "", ErrUnknownImage, "registry " + host},
		{host + "/test/app:v2", "", ErrUnknownImage, "registry " + host},
		{host + "/test/app:v1", "linux/arm64", ErrPlatform, "linux/amd64"},
		{"Bad Ref", "", nil, "image reference"},
		{host + "/test/app:v1", "linux", nil, "os/arch"},
	} {
		_, err := s.Pull(context.Background(), tc.ref, pullOpts(tc.platform))
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Pull(%s, %q) = %v, want %v mentioning %q", tc.ref, tc.platform, err, tc.want, tc.msg)
		}
	}
}

func TestPullPlatformFromIndex(t *testing.T) {
	host, _ := newRegistry(t, nil)
	imgs := map[string]v1.Image{
		"linux/amd64":    randomImage(t, 1, amd64),
		"linux/arm64/v8": randomImage(t, 1, v1.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}),
		"linux/arm/v7":   randomImage(t, 1, v1.Platform{OS: "linux", Architecture: "arm", Variant: "v7"}),
	}
	idx := pushIndex(t, host+"/multi/app:latest", imgs)
	for _, tc := range []struct{ platform, want string }{
		{"linux/amd64", "linux/amd64"},
		{"linux/arm64", "linux/arm64/v8"},
		{"linux/arm/v7", "linux/arm/v7"},
	} {
		t.Run(tc.platform, func(t *testing.T) {
			s := newStore(t)
			got, err := s.Pull(context.Background(), host+"/multi/app", pullOpts(tc.platform))
			if err != nil {
				t.Fatal(err)
			}
			if got.ManifestDigest != digestOf(t, imgs[tc.want]) || got.Digest != digestOf(t, idx) || got.Platform != tc.want {
				t.Errorf("got %s/%s (%s), want %s of index %s", got.ManifestDigest, got.Digest, got.Platform, tc.want, digestOf(t, idx))
			}
			blobs := blobsOf(t, s)
			for p, img := range imgs {
				if p != tc.want && blobs[digestOf(t, img)] {
					t.Errorf("pulled the %s manifest too", p)
				}
			}
		})
	}
	_, err := newStore(t).Pull(context.Background(), host+"/multi/app", pullOpts("linux/s390x"))
	if !errors.Is(err, ErrPlatform) || !strings.Contains(err.Error(), "linux/arm/v7") || !strings.Contains(err.Error(), "linux/amd64") {
		t.Errorf("s390x: %v", err)
	}
}

func TestPullRetriesServerErrors(t *testing.T) {
	for _, path := range []string{"/manifests/", "/blobs/"} {
		t.Run(path, func(t *testing.T) {
			var fails atomic.Int32
			host, _ := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method == http.MethodGet && strings.Contains(r.URL.Path, path) && fails.Add(1) <= 2 {
						http.Error(w, "flaky", http.StatusInternalServerError)
						return
					}
					h.ServeHTTP(w, r)
				})
			})
			img := randomImage(t, 1, amd64)
			push(t, host+"/test/app:v1", img)
			fails.Store(0)
			s := newStore(t)
			got, err := s.Pull(context.Background(), host+"/test/app:v1", pullOpts(""))
			if err != nil {
				t.Fatal(err)
			}
			if got.ManifestDigest != digestOf(t, img) || fails.Load() < 3 {
				t.Errorf("got %s after %d requests", got.ManifestDigest, fails.Load())
			}
		})
	}
}

func TestPullRejectsCorruptBlob(t *testing.T) {
	for _, mode := range []string{"flipped", "truncated", "oversized"} {
		t.Run(mode, func(t *testing.T) {
			var target atomic.Value
			target.Store("")
			host, _ := newRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, target.Load().(string)) || target.Load() == "" {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					b := rec.Body.Bytes()
					switch mode {
					case "flipped":
						b[len(b)/2] ^= 0xff
					case "truncated":
						b = b[:len(b)/2]
					case "oversized":
						b = append(b, 'x')
					}
					w.Header().Set("Content-Length", fmt.Sprint(len(b)))
					w.WriteHeader(http.StatusOK)
					w.Write(b)
				})
			})
			img := randomImage(t, 2, amd64)
			push(t, host+"/test/app:v1", img)
			m, _ := img.Manifest()
			bad := m.Layers[1].Digest.String()
			target.Store(bad)
			s := newStore(t)
			_, err := s.Pull(context.Background(), host+"/test/app:v1", pullOpts(""))
			if err == nil || !strings.Contains(err.Error(), bad) {
				t.Fatalf("pull of a corrupt blob: %v", err)
			}
			if mode != "truncated" && !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("error %v is not a digest mismatch", err)
			}
			if blobsOf(t, s)[bad] {
				t.Error("corrupt blob entered blobs/")
			}
			// Layers are unpacked during the pull; the corrupt one (the top) must not be.
			chains := ChainIDs([]string{diffIDOf(t, img, 0), diffIDOf(t, img, 1)})
			if _, err := os.Stat(filepath.Join(s.layersDir(), strings.TrimPrefix(chains[1], "sha256:"))); err == nil {
				t.Error("corrupt layer entered the layer cache")
			}
			if _, err := s.Resolve(context.Background(), host+"/test/app:v1", ""); !errors.Is(err, ErrUnknownImage) {
				t.Errorf("image named after a failed pull: %v", err)
			}
			if mode != "truncated" {
				if _, err := os.Stat(filepath.Join(s.tmp, strings.TrimPrefix(bad, "sha256:")+".partial")); err == nil {
					t.Error("corrupt partial kept")
				}
			}
		})
	}
}

// TestPullResumesPartial: a partial download left by an interrupted pull is continued with a Range
// request, not fetched again whole.
func TestPullResumesPartial(t *testing.T) {
	var ranges atomic.Value
	ranges.Store("")
	host, _ := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rg := r.Header.Get("Range")
			if r.Method != http.MethodGet || rg == "" {
				h.ServeHTTP(w, r)
				return
			}
			ranges.Store(rg)
			r.Header.Del("Range")
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			var off int
			fmt.Sscanf(rg, "bytes=%d-", &off)
			b := rec.Body.Bytes()
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", off, len(b)-1, len(b)))
			w.WriteHeader(http.StatusPartialContent)
			w.Write(b[off:])
		})
	})
	img := randomImage(t, 1, amd64)
	push(t, host+"/test/app:v1", img)
	l, _ := img.Layers()
	rc, _ := l[0].Compressed()
	full, _ := io.ReadAll(rc)
	d := digestOf(t, l[0])
	s := newStore(t)
	half := len(full) / 2
	if err := os.WriteFile(filepath.Join(s.tmp, strings.TrimPrefix(d, "sha256:")+".partial"), full[:half], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), host+"/test/app:v1", pullOpts("")); err != nil {
		t.Fatal(err)
	}
	if got := ranges.Load(); got != fmt.Sprintf("bytes=%d-", half) {
		t.Errorf("Range = %q, want bytes=%d-", got, half)
	}
	if !blobsOf(t, s)[d] {
		t.Error("resumed blob missing")
	}
}

func writeAuthFile(t *testing.T, host, user, pass string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "auth.json")
	cfg := map[string]any{"auths": map[string]any{host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}}}
	b, _ := json.Marshal(cfg)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("REGISTRY_AUTH_FILE", p)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
}

func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}`, http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	}
}

// TestPullAuth: credentials come from the auth file for their registry only; a blob redirect to
// another host (a CDN) does not carry them.
func TestPullAuth(t *testing.T) {
	var leaked atomic.Value
	leaked.Store("")
	blobs := map[string][]byte{}
	cdn := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a := r.Header.Get("Authorization"); a != "" {
			leaked.Store(a)
		}
		b, ok := blobs[strings.TrimPrefix(r.URL.Path, "/cdn/")]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(cdn.Close)
	var redirects atomic.Int32
	auth := basicAuth("alice", "s3cret")
	host, _ := newRegistry(t, func(h http.Handler) http.Handler {
		inner := auth(h)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:") {
				d := r.URL.Path[strings.LastIndex(r.URL.Path, "/")+1:]
				if _, ok := blobs[d]; ok {
					if _, _, ok := r.BasicAuth(); ok {
						redirects.Add(1)
						http.Redirect(w, r, cdn.URL+"/cdn/"+d, http.StatusTemporaryRedirect)
						return
					}
				}
			}
			inner.ServeHTTP(w, r)
		})
	})
	img := randomImage(t, 2, amd64)
	ls, _ := img.Layers()
	for _, l := range ls {
		rc, _ := l.Compressed()
		b, _ := io.ReadAll(rc)
		blobs[digestOf(t, l)] = b
	}
	r, _ := name.ParseReference(host+"/private/app:v1", name.Insecure)
	writeAuthFile(t, host, "alice", "s3cret")
	if err := remote.Write(r, img, remote.WithAuthFromKeychain(Keychain())); err != nil {
		t.Fatal(err)
	}

	s := newStore(t)
	o := pullOpts("")
	o.Keychain = nil
	// Wrong credentials: the error names the registry.
	writeAuthFile(t, host, "alice", "wrong")
	_, err := s.Pull(context.Background(), host+"/private/app:v1", o)
	if !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), host) {
		t.Errorf("pull with a wrong password: %v", err)
	}
	// Credentials for another registry are not sent here.
	writeAuthFile(t, "elsewhere.example:5000", "alice", "s3cret")
	if _, err := s.Pull(context.Background(), host+"/private/app:v1", o); !errors.Is(err, ErrAuth) {
		t.Errorf("pull with another registry's credentials: %v", err)
	}
	writeAuthFile(t, host, "alice", "s3cret")
	if _, err := s.Pull(context.Background(), host+"/private/app:v1", o); err != nil {
		t.Fatal(err)
	}
	if redirects.Load() != 2 {
		t.Errorf("%d blob redirects, want 2", redirects.Load())
	}
	if l := leaked.Load(); l != "" {
		t.Errorf("redirected blob request carried Authorization %q", l)
	}
}

// TestPullSurvivesConnectionCut: the first response of a blob breaks off mid-body; the pull retries
// and completes with a verified blob.
func TestPullSurvivesConnectionCut(t *testing.T) {
	var cut atomic.Int32
	host, _ := newRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet || !strings.Contains(r.URL.Path, "/blobs/") || cut.Add(1) > 1 {
				h.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			b := rec.Body.Bytes()
			w.Header().Set("Content-Length", fmt.Sprint(len(b)))
			w.WriteHeader(http.StatusOK)
			w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		})
	})
	img := randomImage(t, 1, amd64)
	push(t, host+"/test/app:v1", img)
	cut.Store(0)
	s := newStore(t)
	if _, err := s.Pull(context.Background(), host+"/test/app:v1", pullOpts("")); err != nil {
		t.Fatal(err)
	}
	if cut.Load() < 3 {
		t.Errorf("only %d blob requests: the cut was not retried", cut.Load())
	}
	blobs := blobsOf(t, s)
	for _, d := range imageBlobs(t, img) {
		if !blobs[d] {
			t.Errorf("blob %s missing", d)
		}
	}
}

// diffIDOf returns the diff ID of img's layer i.
func diffIDOf(t *testing.T, img v1.Image, i int) string {
	t.Helper()
	ls, err := img.Layers()
	if err != nil || i >= len(ls) {
		t.Fatalf("layers: %d, %v", len(ls), err)
	}
	h, err := ls[i].DiffID()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}
