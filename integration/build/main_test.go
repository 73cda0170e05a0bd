//go:build linux

package buildtest

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/image/unpack"
	"github.com/knast/knast/internal/testutil"
)

// The suite's shared state: one knast binary, one image store with the busybox base image, and a
// buildah storage holding the same image (under the same name) for the comparisons.
var (
	knastBin   string
	storage    string
	stateRoot  string
	buildahDir string
	baseImage  = "localhost/knast-build-it-busybox:latest"
	suiteTmp   string
)

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("integration/build: needs root (overlayfs, containers); run as root")
		return 1
	}
	var err error
	suiteTmp, err = os.MkdirTemp("", "knast-build-it-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(suiteTmp)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if knastBin, err = testutil.BuildKnast(ctx, suiteTmp); err != nil {
		fmt.Println(err)
		return 1
	}
	storage = filepath.Join(suiteTmp, "storage")
	stateRoot = filepath.Join(suiteTmp, "state")
	buildahDir = filepath.Join(suiteTmp, "buildah")
	archive := filepath.Join(suiteTmp, "busybox.tar")
	if err := writeBase(archive); err != nil {
		fmt.Println(err)
		return 1
	}
	if out, err := exec.Command(knastBin, "--storage", storage, "image", "load", "-i", archive).CombinedOutput(); err != nil {
		fmt.Printf("knast image load: %v\n%s", err, out)
		return 1
	}
	if _, err := exec.LookPath("buildah"); err == nil {
		if out, err := buildahCmd("pull", "-q", "oci-archive:"+archive).CombinedOutput(); err != nil {
			fmt.Printf("buildah pull: %v\n%s", err, out)
			return 1
		}
		defer func() {
			buildahCmd("rmi", "--all", "--force").Run()
			unmountBelow(buildahDir)
		}()
	}
	defer testutil.RemoveCgroupParent(stateRoot)
	// Stage overlays live under the suite's storage, RUN containers' mounts under its bundles.
	return testutil.CheckSuite("build integration", testutil.Scope{Paths: []string{suiteTmp}}, m.Run)
}

func writeBase(archive string) error {
	rootfs := filepath.Join(suiteTmp, "base-rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	// A directory the deletion tests empty, and a file for COPY --from an image.
	if err := os.MkdirAll(filepath.Join(rootfs, "opt/data/sub"), 0o755); err != nil {
		return err
	}
	for _, f := range []string{"opt/data/a", "opt/data/sub/b", "etc/motd"} {
		if err := os.WriteFile(filepath.Join(rootfs, f), []byte(f+"\n"), 0o644); err != nil {
			return err
		}
	}
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	defer f.Close()
	return testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{
		Name: baseImage, Cmd: []string{"sh"},
		Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
	})
}

// buildahCmd runs buildah on the suite's own storage (vfs: nothing stays mounted), with runc (crun
// refuses hybrid cgroup hosts).
func buildahCmd(args ...string) *exec.Cmd {
	base := []string{"--root", filepath.Join(buildahDir, "root"), "--runroot", filepath.Join(buildahDir, "run"), "--storage-driver", "vfs"}
	cmd := exec.Command("buildah", append(base, args...)...)
	cmd.Env = append(os.Environ(), "BUILDAH_RUNTIME=runc")
	return cmd
}

// unmountBelow detaches every mount under dir (a failed buildah may leave some).
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && strings.HasPrefix(f[4], dir) {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		unix.Unmount(mp, unix.MNT_DETACH)
	}
}

// knast runs the binary on the suite's storage and state root.
func knast(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, knastBin, append([]string{"--storage", storage, "--root", stateRoot}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// writeContext creates a build context from files (path -> content; a path ending in / is a directory).
func writeContext(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for p, c := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// image is an image read back from an OCI archive: its config and its layers unpacked.
type image struct {
	cfg    ocispec.Image
	raw    []byte // the config as stored
	rootfs string
	layers int
}

// readArchive unpacks the OCI archive file (one image) into a rootfs under t.TempDir.
func readArchive(t *testing.T, file string) image {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := map[string][]byte{}
	var index []byte
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(hdr.Name, "./")
		switch {
		case name == "index.json":
			index = b
		case strings.HasPrefix(name, "blobs/sha256/"):
			blobs["sha256:"+strings.TrimPrefix(name, "blobs/sha256/")] = b
		}
	}
	var idx ocispec.Index
	if err := json.Unmarshal(index, &idx); err != nil || len(idx.Manifests) == 0 {
		t.Fatalf("%s: index.json: %v (%d manifests)", file, err, len(idx.Manifests))
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(blobs[string(idx.Manifests[0].Digest)], &m); err != nil {
		t.Fatalf("%s: manifest: %v", file, err)
	}
	var img image
	img.raw = blobs[string(m.Config.Digest)]
	if err := json.Unmarshal(img.raw, &img.cfg); err != nil {
		t.Fatalf("%s: config: %v", file, err)
	}
	var layers []io.Reader
	for _, l := range m.Layers {
		layers = append(layers, bytes.NewReader(blobs[string(l.Digest)]))
	}
	img.layers = len(layers)
	img.rootfs = filepath.Join(dir, "rootfs")
	if err := unpack.Unpack(context.Background(), img.rootfs, layers, unpack.Options{}); err != nil {
		t.Fatalf("%s: unpack: %v", file, err)
	}
	return img
}

// knastImage saves a knast image and reads it back.
func knastImage(t *testing.T, ref string) image {
	t.Helper()
	file := filepath.Join(t.TempDir(), "knast.tar")
	if out, err := knast(t, "image", "save", "-o", file, ref); err != nil {
		t.Fatalf("knast image save %s: %v\n%s", ref, err, out)
	}
	return readArchive(t, file)
}

// buildahImage builds the context with buildah bud and reads the image back.
func buildahImage(t *testing.T, ctxDir string, args ...string) image {
	t.Helper()
	tag := "localhost/cmp-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	bud := append([]string{"bud", "--runtime", "runc", "-q", "-t", tag}, args...)
	if out, err := buildahCmd(append(bud, ctxDir)...).CombinedOutput(); err != nil {
		t.Fatalf("buildah bud: %v\n%s", err, out)
	}
	file := filepath.Join(t.TempDir(), "buildah.tar")
	if out, err := buildahCmd("push", "-q", tag, "oci-archive:"+file).CombinedOutput(); err != nil {
		t.Fatalf("buildah push: %v\n%s", err, out)
	}
	t.Cleanup(func() { buildahCmd("rmi", "-f", tag).Run() })
	return readArchive(t, file)
}

// entry is what the comparison looks at for one file: times are left out (RUN steps ran at
// different moments).
type entry struct {
	Type     string
	Mode     fs.FileMode
	UID, GID uint32
	Link     string
	Content  string
}

func (e entry) String() string {
	return fmt.Sprintf("%s %v %d:%d %s%s", e.Type, e.Mode, e.UID, e.GID, e.Link, e.Content)
}

// tree lists a rootfs.
func tree(t *testing.T, root string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		if rel == "." {
			return nil
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			e.Type = "link"
			e.Link, _ = os.Readlink(p)
		case fi.IsDir():
			e.Type = "dir"
		case fi.Mode().IsRegular():
			e.Type = "file"
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			e.Content = fmt.Sprintf(" %d bytes %s", len(b), hex.EncodeToString(sum[:6]))
		default:
			e.Type = "other"
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// compareTrees reports every difference between two rootfs listings.
func compareTrees(t *testing.T, knastRoot, buildahRoot string, ignore func(string) bool) {
	t.Helper()
	a, b := tree(t, knastRoot), tree(t, buildahRoot)
	var diffs []string
	for p, ea := range a {
		if ignore != nil && ignore(p) {
			continue
		}
		eb, ok := b[p]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("only knast:   %s %s", p, ea))
		case ea != eb:
			diffs = append(diffs, fmt.Sprintf("differ:       %s knast %s, buildah %s", p, ea, eb))
		}
	}
	for p, eb := range b {
		if _, ok := a[p]; !ok && (ignore == nil || !ignore(p)) {
			diffs = append(diffs, fmt.Sprintf("only buildah: %s %s", p, eb))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("file trees differ (%d):\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
}

// comparable is the part of a config both builders must agree on.
type comparable struct {
	Env          []string
	Entrypoint   []string
	Cmd          []string
	WorkingDir   string
	User         string
	Labels       map[string]string
	ExposedPorts []string
	Volumes      []string
	StopSignal   string
}

func configOf(c ocispec.ImageConfig) comparable {
	out := comparable{Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, WorkingDir: c.WorkingDir, User: c.User, StopSignal: c.StopSignal, Labels: map[string]string{}}
	for k, v := range c.Labels {
		if k != "io.buildah.version" {
			out.Labels[k] = v
		}
	}
	for p := range c.ExposedPorts {
		out.ExposedPorts = append(out.ExposedPorts, p)
	}
	for v := range c.Volumes {
		out.Volumes = append(out.Volumes, v)
	}
	sort.Strings(out.ExposedPorts)
	sort.Strings(out.Volumes)
	return out
}
