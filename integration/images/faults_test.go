//go:build linux

package images

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// proxy is a loopback reverse proxy in front of a registry that records the Authorization scheme
// and Range header of every request, can wrap response bodies, and serves extra paths itself (a
// token realm on the registry's own host:port).
type proxy struct {
	addr  string
	mu    sync.Mutex
	reqs  []proxyReq
	body  func(r *http.Request, rc io.ReadCloser) io.ReadCloser
	up    *httputil.ReverseProxy
	local map[string]http.Handler
}

type proxyReq struct{ method, path, auth, rng string }

// newProxy starts a proxy; upstream may be set later with setUpstream.
func newProxy(t *testing.T, upstream string) *proxy {
	t.Helper()
	p := &proxy{local: map[string]http.Handler{}}
	if upstream != "" {
		p.setUpstream(upstream)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		p.mu.Lock()
		p.reqs = append(p.reqs, proxyReq{r.Method, r.URL.Path, scheme, r.Header.Get("Range")})
		h, up := p.local[r.URL.Path], p.up
		p.mu.Unlock()
		switch {
		case h != nil:
			h.ServeHTTP(w, r)
		case up != nil:
			up.ServeHTTP(w, r)
		default:
			http.Error(w, "no upstream", http.StatusBadGateway)
		}
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	t.Cleanup(srv.Close)
	p.addr = strings.TrimPrefix(srv.URL, "http://")
	return p
}

func (p *proxy) setUpstream(upstream string) {
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: upstream})
	rp.ErrorLog = log.New(io.Discard, "", 0)
	rp.Transport = &http.Transport{DisableKeepAlives: true}
	rp.ModifyResponse = func(resp *http.Response) error {
		p.mu.Lock()
		wrap := p.body
		p.mu.Unlock()
		if wrap != nil {
			resp.Body = wrap(resp.Request, resp.Body)
		}
		return nil
	}
	p.mu.Lock()
	p.up = rp
	p.mu.Unlock()
}

func (p *proxy) requests() []proxyReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyReq(nil), p.reqs...)
}

// tokenServer is a docker token-auth server (the realm): it checks basic credentials and issues
// ES256 JWTs, signed by a key whose self-signed certificate the registry trusts, granting every
// scope asked for.
type tokenServer struct {
	service, issuer string
	user, pass      string
	key             *ecdsa.PrivateKey
	cert            []byte // DER
	good, bad       atomic.Int32
}

// newTokenServer makes a token server and the registry's rootcertbundle; its handler is served by
// the caller (at the realm).
func newTokenServer(t *testing.T, user, pass string) (*tokenServer, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "knast test token signer"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	bundle := filepath.Join(t.TempDir(), "token-ca.pem")
	if err := os.WriteFile(bundle, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return &tokenServer{service: "knast-test-registry", issuer: "knast-test-issuer", user: user, pass: pass, key: key, cert: der}, bundle
}

func (ts *tokenServer) serve(w http.ResponseWriter, r *http.Request) {
	u, p, ok := r.BasicAuth()
	if !ok || u != ts.user || p != ts.pass {
		ts.bad.Add(1)
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}`, http.StatusUnauthorized)
		return
	}
	ts.good.Add(1)
	type access struct {
		Type    string   `json:"type"`
		Name    string   `json:"name"`
		Actions []string `json:"actions"`
	}
	grants := []access{}
	for _, s := range r.URL.Query()["scope"] {
		parts := strings.Split(s, ":")
		if len(parts) == 3 {
			grants = append(grants, access{Type: parts[0], Name: parts[1], Actions: strings.Split(parts[2], ",")})
		}
	}
	now := time.Now()
	header, _ := json.Marshal(map[string]any{"typ": "JWT", "alg": "ES256", "x5c": []string{base64.StdEncoding.EncodeToString(ts.cert)}})
	claims, _ := json.Marshal(map[string]any{
		"iss": ts.issuer, "sub": u, "aud": ts.service, "exp": now.Add(5 * time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(), "iat": now.Unix(), "jti": fmt.Sprint(now.UnixNano()), "access": grants,
	})
	enc := base64.RawURLEncoding
	signing := enc.EncodeToString(header) + "." + enc.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	rs, ss, err := ecdsa.Sign(rand.Reader, ts.key, sum[:])
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	sig := make([]byte, 64)
	rs.FillBytes(sig[:32])
	ss.FillBytes(sig[32:])
	tok := signing + "." + enc.EncodeToString(sig)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"token": tok, "access_token": tok, "expires_in": 300, "issued_at": now.Format(time.RFC3339)})
}

// TestRegistryTokenAuth: docker-registry with token auth behind a recording proxy. Without
// credentials and with wrong ones knast fails with the registry's 401; with the right ones push and
// pull work; the password goes only to the realm (the registry sees bearer tokens), and another
// registry never sees any credentials.
func TestRegistryTokenAuth(t *testing.T) {
	w := newRegWorld(t)
	ts, bundle := newTokenServer(t, "bob", "t0ken-pass")
	// The realm is on the registry's own host:port (the proxy serves /token), as a registry and its
	// token service behind one address are; a realm elsewhere on a private address is refused below.
	px := newProxy(t, "")
	px.local["/token"] = http.HandlerFunc(ts.serve)
	auth := fmt.Sprintf("auth:\n  token:\n    realm: http://%s/token\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
		px.addr, ts.service, ts.issuer, bundle)
	reg := w.newRegistryProc(freeAddr(t), auth)
	px.setUpstream(reg.addr)
	ref := px.addr + "/knast/busybox:1"
	w.must(w.knast("image", "load", "-i", w.busyboxArchive(ref)))

	r := w.knast("push", "--tls-verify=false", "-q", ref)
	if r.code == 0 || !strings.Contains(r.stderr, px.addr) || !strings.Contains(r.stderr, "authentication") {
		t.Errorf("anonymous push: %v", r)
	}
	r = w.knast("login", "--tls-verify=false", "-u", "bob", "-p", "wrong", px.addr)
	if r.code == 0 || !strings.Contains(r.stderr, px.addr) || !strings.Contains(r.stderr, "401") {
		t.Errorf("login with a wrong password must fail naming the registry and the 401: %v", r)
	}
	if ts.bad.Load() == 0 {
		t.Error("the token server never saw the wrong password: knast did not go through the realm")
	}
	if out := w.must(w.knast("login", "--tls-verify=false", "-u", "bob", "-p", "t0ken-pass", px.addr)); !strings.Contains(out, "Login Succeeded") {
		t.Errorf("login: %q", out)
	}
	digest := w.must(w.knast("push", "--tls-verify=false", "-q", ref))
	w.must(w.knast("image", "rm", ref))
	if got := w.must(w.knast("pull", "--tls-verify=false", "-q", ref)); got != digest {
		t.Errorf("pull with a token: %q, want %s", got, digest)
	}
	bearer := 0
	for _, q := range px.requests() {
		switch q.auth {
		case "Basic":
			if q.path != "/token" {
				t.Errorf("the registry got the password (%s %s): it belongs to the realm only", q.method, q.path)
			}
		case "Bearer":
			bearer++
		}
	}
	if bearer == 0 {
		t.Error("no request reached the registry with a bearer token")
	}

	// Credentials stored for the token registry never go to another registry.
	other := newProxy(t, w.startRegistry("", ""))
	oref := other.addr + "/knast/plain:1"
	pushImage(t, oref, ociImage(t, v1.Config{}, tarLayer(t, tarEntry{name: "f", data: "x"})))
	good := ts.good.Load()
	w.must(w.knast("pull", "--tls-verify=false", "-q", oref))
	for _, q := range other.requests() {
		if q.auth != "" {
			t.Errorf("another registry got %s credentials (%s %s)", q.auth, q.method, q.path)
		}
	}
	if ts.good.Load() != good {
		t.Error("pulling from another registry asked the token server")
	}

	// Wrong stored credentials: a clear authentication error for the registry.
	w.must(w.knast("logout", px.addr))
	w.knast("login", "--tls-verify=false", "-u", "bob", "-p", "wrong", px.addr)
	w.must(w.knast("image", "rm", ref))
	if r := w.knast("pull", "--tls-verify=false", "-q", ref); r.code == 0 || !strings.Contains(r.stderr, px.addr) || !strings.Contains(r.stderr, "authentication") {
		t.Errorf("pull without valid credentials: %v", r)
	}

	// A registry that names a realm on another (private) host does not get the credentials sent
	// there.
	thief := newProxy(t, "")
	thief.local["/token"] = http.HandlerFunc(ts.serve)
	evil := w.newRegistryProc(freeAddr(t), fmt.Sprintf("auth:\n  token:\n    realm: http://%s/token\n    service: %s\n    issuer: %s\n    rootcertbundle: %s\n",
		thief.addr, ts.service, ts.issuer, bundle))
	w.must(w.knast("login", "--tls-verify=false", "-u", "bob", "-p", "t0ken-pass", px.addr))
	w.knast("login", "--tls-verify=false", "-u", "bob", "-p", "t0ken-pass", evil.addr)
	if r := w.knast("pull", "--tls-verify=false", "-q", evil.addr+"/knast/busybox:1"); r.code == 0 || !strings.Contains(r.stderr, "realm") {
		t.Errorf("pull from a registry with a foreign realm: %v", r)
	}
	for _, q := range thief.requests() {
		t.Errorf("the foreign realm got a request (%s %s, auth %q)", q.method, q.path, q.auth)
	}
}

// TestPullRegistryKilled: the registry dies while a large layer streams. The pull fails, nothing
// partial is in blobs/ and the image is not named; after a restart the rerun resumes the download
// (a Range request) and ends with verified blobs.
func TestPullRegistryKilled(t *testing.T) {
	w := newRegWorld(t)
	reg := w.newRegistryProc(freeAddr(t), "")
	big, err := random.Layer(48<<20, types.OCIUncompressedLayer)
	if err != nil {
		t.Fatal(err)
	}
	bigDigest, err := big.Digest()
	if err != nil {
		t.Fatal(err)
	}
	img := ociImage(t, v1.Config{}, big)
	pushImage(t, reg.addr+"/knast/big:1", img)
	px := newProxy(t, reg.addr)
	ref := px.addr + "/knast/big:1"

	var killed atomic.Bool
	px.body = func(r *http.Request, rc io.ReadCloser) io.ReadCloser {
		if !strings.HasSuffix(r.URL.Path, bigDigest.String()) || killed.Load() {
			return rc
		}
		return &killAfter{rc: rc, after: 8 << 20, fire: func() {
			if !killed.Swap(true) {
				reg.kill()
			}
		}}
	}
	r := w.knast("pull", "--tls-verify=false", "-q", ref)
	if !killed.Load() {
		t.Fatalf("the registry was never killed mid-blob: %s", r)
	}
	if r.code == 0 || !strings.Contains(r.stderr, px.addr) {
		t.Fatalf("pull with the registry gone: %s", r)
	}
	for _, b := range w.blobs(w.storage) {
		if b == bigDigest.String() {
			t.Errorf("the interrupted blob %s is in blobs/", b)
		}
	}
	if out := w.must(w.knast("images", "-q")); out != "" {
		t.Errorf("an interrupted pull named an image: %q", out)
	}

	reg.start()
	before := len(px.requests())
	w.must(w.knast("pull", "--tls-verify=false", "-q", ref))
	resumed := false
	for _, q := range px.requests()[before:] {
		if strings.HasSuffix(q.path, bigDigest.String()) && q.method == http.MethodGet && strings.HasPrefix(q.rng, "bytes=") && !strings.HasPrefix(q.rng, "bytes=0-") {
			resumed = true
		}
	}
	if !resumed {
		t.Errorf("the rerun did not resume the partial blob: %+v", px.requests()[before:])
	}
	found := false
	for _, b := range w.blobs(w.storage) {
		data, err := os.ReadFile(filepath.Join(w.storage, "oci", "blobs", "sha256", strings.TrimPrefix(b, "sha256:")))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(data)
		if "sha256:"+hex.EncodeToString(sum[:]) != b {
			t.Errorf("blob %s has content sha256:%x", b, sum)
		}
		found = found || b == bigDigest.String()
	}
	if !found {
		t.Error("the large layer is not in the store after the rerun")
	}
}

// killAfter calls fire once after n bytes have been read, then goes on reading.
type killAfter struct {
	rc    io.ReadCloser
	n     int64
	after int64
	fire  func()
}

func (k *killAfter) Read(p []byte) (int, error) {
	n, err := k.rc.Read(p)
	k.n += int64(n)
	if k.n >= k.after && k.fire != nil {
		k.fire()
		k.fire = nil
	}
	return n, err
}

func (k *killAfter) Close() error { return k.rc.Close() }

// TestPullPlatformIndex: an index with two platforms on docker-registry; --platform picks its
// manifest, the default is the host's, and a platform the index lacks is a clear error.
func TestPullPlatformIndex(t *testing.T) {
	w := newRegWorld(t)
	addr := w.startRegistry("", "")
	plats := map[string]string{"linux/" + runtime.GOARCH: "", "linux/arm64/v8": ""}
	if runtime.GOARCH == "arm64" {
		plats = map[string]string{"linux/arm64/v8": "", "linux/amd64": ""}
	}
	var idx v1.ImageIndex = mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	for p := range plats {
		parts := strings.Split(p, "/")
		img := ociImage(t, v1.Config{}, tarLayer(t, tarEntry{name: "platform", data: p}))
		cf, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.Architecture = parts[1]
		if len(parts) == 3 {
			cf.Variant = parts[2]
		}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		plats[p] = d.String()
		desc := v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: parts[1]}}
		if len(parts) == 3 {
			desc.Platform.Variant = parts[2]
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: desc})
	}
	ref := addr + "/knast/multi:1"
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx, remote.WithContext(t.Context())); err != nil {
		t.Fatal(err)
	}
	idxDigest, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, platform, want, wantErr string
	}{
		{name: "host default", want: plats["linux/"+runtime.GOARCH]},
		{name: "arm64 variant", platform: "linux/arm64/v8", want: plats["linux/arm64/v8"]},
		{name: "missing", platform: "linux/s390x", wantErr: "linux/s390x"},
	}
	if runtime.GOARCH == "arm64" {
		tests[0].want = plats["linux/arm64/v8"]
		tests[1] = struct{ name, platform, want, wantErr string }{name: "amd64", platform: "linux/amd64", want: plats["linux/amd64"]}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			storage := filepath.Join(t.TempDir(), "storage")
			args := []string{"pull", "--tls-verify=false", "-q"}
			if tt.platform != "" {
				args = append(args, "--platform", tt.platform)
			}
			r := w.knastIn(storage, append(args, ref)...)
			if tt.wantErr != "" {
				if r.code == 0 || !strings.Contains(r.stderr, tt.wantErr) {
					t.Fatalf("%s", r)
				}
				return
			}
			if got := w.must(r); got != idxDigest.String() {
				t.Errorf("pull printed %s, want the index %s", got, idxDigest)
			}
			var insp struct{ ManifestDigest, Platform string }
			if err := json.Unmarshal([]byte(w.must(w.knastIn(storage, "image", "inspect", ref))), &insp); err != nil {
				t.Fatal(err)
			}
			if insp.ManifestDigest != tt.want {
				t.Errorf("manifest %s (%s), want %s", insp.ManifestDigest, insp.Platform, tt.want)
			}
		})
	}
}
