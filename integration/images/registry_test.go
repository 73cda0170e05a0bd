//go:build linux

package images

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/knast/knast/internal/testutil"
)

// regWorld is one registry test's private knast (binary, --root, --storage, auth file) and tools.
type regWorld struct {
	t       *testing.T
	ctx     context.Context
	bin     string
	dir     string
	storage string
	env     []string
}

func newRegWorld(t *testing.T) *regWorld {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"docker-registry", "skopeo", "umoci"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (Debian packages docker-registry skopeo umoci): %v", tool, err)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	dir := t.TempDir()
	w := &regWorld{t: t, ctx: ctx, bin: filepath.Join(dir, "knast"), dir: dir, storage: filepath.Join(dir, "storage")}
	t.Cleanup(func() { testutil.RemoveCgroupParent(filepath.Join(dir, "root")) }) // runs last
	// Credentials only ever go to this test's auth file, never the host's.
	w.env = append(os.Environ(), "REGISTRY_AUTH_FILE="+filepath.Join(dir, "auth.json"), "DOCKER_CONFIG="+filepath.Join(dir, "docker"),
		"XDG_RUNTIME_DIR="+filepath.Join(dir, "xdg"), "HOME="+dir)
	if _, err := testutil.BuildKnast(ctx, dir); err != nil {
		t.Fatal(err)
	}
	return w
}

type cmdResult struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r cmdResult) String() string {
	return fmt.Sprintf("%s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

func (w *regWorld) run(name string, args ...string) cmdResult {
	w.t.Helper()
	cmd := exec.CommandContext(w.ctx, name, args...)
	cmd.Env = w.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	r := cmdResult{args: append([]string{name}, args...), stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		w.t.Fatalf("%s %v: %v", name, args, err)
	}
	return r
}

// knast runs knast with this world's storage; storage "" means w.storage.
func (w *regWorld) knastIn(storage string, args ...string) cmdResult {
	w.t.Helper()
	if storage == "" {
		storage = w.storage
	}
	return w.run(w.bin, append([]string{"--root", filepath.Join(w.dir, "root"), "--storage", storage}, args...)...)
}

func (w *regWorld) knast(args ...string) cmdResult { w.t.Helper(); return w.knastIn("", args...) }

// must fails the test unless r succeeded, and returns its trimmed stdout.
func (w *regWorld) must(r cmdResult) string {
	w.t.Helper()
	if r.code != 0 {
		w.t.Fatalf("%v", r)
	}
	return strings.TrimSpace(r.stdout)
}

// startRegistry runs Debian's docker-registry on a free loopback port with storage in a temp dir;
// with user set, it asks for htpasswd (bcrypt) basic auth. It is stopped when the test ends.
func (w *regWorld) startRegistry(user, pass string) string {
	t := w.t
	t.Helper()
	auth := ""
	if user != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		htp := filepath.Join(t.TempDir(), "htpasswd")
		if err := os.WriteFile(htp, []byte(user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: knast-test\n    path: %s\n", htp)
	}
	return w.newRegistryProc(freeAddr(t), auth).addr
}

// freeAddr returns a loopback address no one listens on (for a moment).
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// registryProc is one docker-registry process; restart brings it back on the same address and data.
type registryProc struct {
	t       *testing.T
	addr    string
	cfgPath string
	logPath string
	cmd     *exec.Cmd
}

// newRegistryProc starts docker-registry on addr with the auth section auth (YAML, may be empty).
func (w *regWorld) newRegistryProc(addr, auth string) *registryProc {
	t := w.t
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n  secret: knast-test\n", filepath.Join(dir, "data"), addr)
	p := &registryProc{t: t, addr: addr, cfgPath: filepath.Join(dir, "config.yml"), logPath: filepath.Join(dir, "registry.log")}
	if err := os.WriteFile(p.cfgPath, []byte(cfg+auth), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.kill)
	p.start()
	return p
}

func (p *registryProc) start() {
	t := p.t
	t.Helper()
	logf, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("docker-registry", "serve", p.cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(p.logPath)
			t.Fatalf("docker-registry on %s did not answer: %v\n%s", p.addr, err, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops the registry with SIGKILL (idempotent).
func (p *registryProc) kill() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	p.cmd.Wait()
	p.cmd = nil
}

// busyboxArchive writes an OCI archive of a busybox-static rootfs named ref and returns its path.
func (w *regWorld) busyboxArchive(ref string) string {
	w.t.Helper()
	rootfs := filepath.Join(w.t.TempDir(), "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		w.t.Fatal(err)
	}
	p := filepath.Join(w.t.TempDir(), "busybox.tar")
	f, err := os.Create(p)
	if err != nil {
		w.t.Fatal(err)
	}
	defer f.Close()
	if err := testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{Name: ref, Cmd: []string{"sh"}}); err != nil {
		w.t.Fatal(err)
	}
	return p
}

func (w *regWorld) blobs(storage string) []string {
	w.t.Helper()
	entries, err := os.ReadDir(filepath.Join(storage, "oci", "blobs", "sha256"))
	if err != nil {
		w.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, "sha256:"+e.Name())
	}
	return out
}

type skopeoInspect struct {
	Digest string   `json:"Digest"`
	Layers []string `json:"Layers"`
}

func (w *regWorld) skopeoInspect(args ...string) skopeoInspect {
	w.t.Helper()
	out := w.must(w.run("skopeo", append([]string{"inspect"}, args...)...))
	var si skopeoInspect
	if err := json.Unmarshal([]byte(out), &si); err != nil {
		w.t.Fatalf("skopeo inspect %v: %v\n%s", args, err, out)
	}
	return si
}

// TestRegistryRoundTrip: an image built here goes through load, push, rm, pull, save and load, and
// skopeo and umoci agree with knast about it at every step.
func TestRegistryRoundTrip(t *testing.T) {
	w := newRegWorld(t)
	host := w.startRegistry("", "")
	ref := host + "/knast/busybox:latest"
	loaded := w.must(w.knast("image", "load", "-i", w.busyboxArchive(ref)))
	if loaded != "Loaded image: "+ref {
		t.Fatalf("load: %q", loaded)
	}
	digest := w.must(w.knast("push", "--tls-verify=false", ref))
	if reg := w.skopeoInspect("--tls-verify=false", "docker://"+ref); reg.Digest != digest {
		t.Fatalf("registry has %s, knast pushed %s", reg.Digest, digest)
	}
	// A second push finds every blob there.
	w.must(w.knast("push", "--tls-verify=false", ref))

	// Gone from the store, blobs too; then pulled back.
	w.must(w.knast("image", "rm", ref))
	if b := w.blobs(w.storage); len(b) != 0 {
		t.Fatalf("blobs after rm: %v", b)
	}
	if got := w.must(w.knast("pull", "--tls-verify=false", ref)); got != digest {
		t.Fatalf("pull printed %q, want %s", got, digest)
	}
	r := w.knast("pull", "--tls-verify=false", "-q", host+"/knast/nothere:latest")
	if r.code == 0 || !strings.Contains(r.stderr, "unknown image") || !strings.Contains(r.stderr, host) {
		t.Errorf("pull of a missing image: %v", r)
	}
	r = w.knast("pull", "--tls-verify=false", "--platform", "linux/s390x", ref)
	if r.code == 0 || !strings.Contains(r.stderr, "linux/s390x") {
		t.Errorf("pull for another platform: %v", r)
	}

	// skopeo reads the store's layout by name and agrees with the registry.
	local := w.skopeoInspect("oci:" + filepath.Join(w.storage, "oci") + ":" + ref)
	reg := w.skopeoInspect("--tls-verify=false", "docker://"+ref)
	if local.Digest != digest || strings.Join(local.Layers, ",") != strings.Join(reg.Layers, ",") {
		t.Errorf("skopeo: store %+v, registry %+v", local, reg)
	}
	// skopeo copy from the registry gives the same manifest and blobs.
	copyDir := filepath.Join(t.TempDir(), "copy")
	w.must(w.run("skopeo", "copy", "--src-tls-verify=false", "docker://"+ref, "oci:"+copyDir+":x"))
	if c := w.skopeoInspect("oci:" + copyDir + ":x"); c.Digest != digest {
		t.Errorf("skopeo copy has %s, want %s", c.Digest, digest)
	}
	for _, l := range reg.Layers {
		ours, err1 := os.ReadFile(filepath.Join(w.storage, "oci", "blobs", "sha256", strings.TrimPrefix(l, "sha256:")))
		theirs, err2 := os.ReadFile(filepath.Join(copyDir, "blobs", "sha256", strings.TrimPrefix(l, "sha256:")))
		if err1 != nil || err2 != nil || !bytes.Equal(ours, theirs) {
			t.Errorf("layer %s: store %v, skopeo copy %v, equal %v", l, err1, err2, bytes.Equal(ours, theirs))
		}
	}
	// umoci unpacks the store's image.
	bundle := filepath.Join(t.TempDir(), "bundle")
	if r := w.run("umoci", "unpack", "--image", filepath.Join(w.storage, "oci")+":"+ref, bundle); r.code != 0 {
		t.Errorf("umoci unpack: %v", r)
	} else if _, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil {
		t.Errorf("umoci's rootfs: %v", err)
	}

	// images: table, json, -q; inspect.
	table := w.must(w.knast("images"))
	if !strings.HasPrefix(table, "REPOSITORY") || !strings.Contains(table, host+"/knast/busybox") || !strings.Contains(table, digest[:19]) {
		t.Errorf("images:\n%s", table)
	}
	var list []struct{ Name, Digest string }
	if err := json.Unmarshal([]byte(w.must(w.knast("image", "ls", "--format", "json"))), &list); err != nil || len(list) != 1 || list[0].Name != ref || list[0].Digest != digest {
		t.Errorf("image ls --format json: %+v, %v", list, err)
	}
	if q := w.must(w.knast("images", "-q")); q != digest {
		t.Errorf("images -q: %q", q)
	}
	var insp struct {
		ManifestDigest string
		Manifest       struct{ Layers []struct{ Digest string } }
		Config         struct{ Config struct{ Cmd []string } }
	}
	if err := json.Unmarshal([]byte(w.must(w.knast("image", "inspect", ref))), &insp); err != nil || insp.ManifestDigest != digest ||
		len(insp.Manifest.Layers) != 1 || strings.Join(insp.Config.Config.Cmd, " ") != "sh" {
		t.Errorf("inspect: %+v, %v", insp, err)
	}

	// save/load in both formats into fresh stores.
	for _, format := range []string{"oci-archive", "docker-archive"} {
		archive := filepath.Join(t.TempDir(), "img.tar")
		w.must(w.knast("image", "save", "-o", archive, "--format", format, ref))
		if format == "docker-archive" {
			if si := w.skopeoInspect("docker-archive:" + archive); len(si.Layers) != 1 {
				t.Errorf("skopeo inspect docker-archive: %+v", si)
			}
		} else if si := w.skopeoInspect("oci-archive:" + archive + ":" + ref); si.Digest != digest {
			t.Errorf("skopeo inspect oci-archive: %+v", si)
		}
		fresh := filepath.Join(t.TempDir(), "storage")
		if got := w.must(w.knastIn(fresh, "image", "load", "-i", archive)); got != "Loaded image: "+ref {
			t.Errorf("%s load: %q", format, got)
		}
		var again struct {
			ManifestDigest string
			Manifest       struct{ Config struct{ Digest string } }
		}
		json.Unmarshal([]byte(w.must(w.knastIn(fresh, "image", "inspect", ref))), &again)
		if again.Manifest.Config.Digest == "" || (format == "oci-archive" && again.ManifestDigest != digest) {
			t.Errorf("%s round trip: %+v", format, again)
		}
	}

	// tag + rm keeps shared blobs; prune removes a stray one.
	w.must(w.knast("image", "tag", ref, "localhost/other:1"))
	before := w.blobs(w.storage)
	w.must(w.knast("image", "rm", ref))
	if after := w.blobs(w.storage); len(after) != len(before) {
		t.Errorf("rm of one of two names removed blobs: %v -> %v", before, after)
	}
	stray := filepath.Join(w.storage, "oci", "blobs", "sha256", strings.Repeat("0", 64))
	os.WriteFile(stray, []byte("x"), 0o644)
	if out := w.must(w.knast("image", "prune")); !strings.Contains(out, "Deleted 1 blobs") {
		t.Errorf("prune: %q", out)
	}
	if _, err := os.Stat(stray); err == nil {
		t.Error("stray blob survived prune")
	}
}

// TestRegistryLogin: a registry behind htpasswd auth refuses anonymous pulls and wrong passwords,
// login stores working credentials, logout removes them.
func TestRegistryLogin(t *testing.T) {
	w := newRegWorld(t)
	host := w.startRegistry("alice", "s3cret")
	ref := host + "/private/busybox:1"
	w.must(w.knast("image", "load", "-i", w.busyboxArchive(ref)))

	r := w.knast("push", "--tls-verify=false", "-q", ref)
	if r.code == 0 || !strings.Contains(r.stderr, host) || !strings.Contains(r.stderr, "knast login") {
		t.Errorf("anonymous push: %v", r)
	}
	r = w.knast("login", "--tls-verify=false", "-u", "alice", "-p", "wrong", host)
	if r.code == 0 || !strings.Contains(r.stderr, host) {
		t.Errorf("login with a wrong password: %v", r)
	}
	login := exec.CommandContext(w.ctx, w.bin, "--storage", w.storage, "login", "--tls-verify=false", "-u", "alice", "--password-stdin", host)
	login.Env = w.env
	login.Stdin = strings.NewReader("s3cret\n")
	if out, err := login.CombinedOutput(); err != nil || !strings.Contains(string(out), "Login Succeeded") {
		t.Fatalf("login: %v\n%s", err, out)
	}
	b, err := os.ReadFile(filepath.Join(w.dir, "auth.json"))
	if err != nil || !strings.Contains(string(b), host) {
		t.Fatalf("auth file: %s, %v", b, err)
	}
	digest := w.must(w.knast("push", "--tls-verify=false", "-q", ref))
	w.must(w.knast("image", "rm", ref))
	if got := w.must(w.knast("pull", "--tls-verify=false", "-q", ref)); got != digest {
		t.Errorf("pull with credentials: %q, want %s", got, digest)
	}
	w.must(w.knast("logout", host))
	w.must(w.knast("image", "rm", ref))
	if r := w.knast("pull", "--tls-verify=false", "-q", ref); r.code == 0 || !strings.Contains(r.stderr, "authentication") {
		t.Errorf("pull after logout: %v", r)
	}
}
