//go:build linux

package buildtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// tarGz makes a gzip'ed tar of entries (name -> content; a "->" prefix makes a symlink).
func tarGz(t *testing.T, entries [][2]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	for _, e := range entries {
		hdr := &tar.Header{Name: e[0], Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(e[1]))}
		if target, ok := strings.CutPrefix(e[1], "->"); ok {
			hdr = &tar.Header{Name: e[0], Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: target}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(e[1]))
		}
	}
	tw.Close()
	zw.Close()
	return buf.Bytes()
}

// Symlinks in the image (absolute and ../ ones pointing at a host directory) must resolve inside the
// stage rootfs for WORKDIR, COPY and ADD; symlinks in the context must not reach outside it.
func TestBuildSymlinksStayInside(t *testing.T) {
	host := t.TempDir()
	marker := filepath.Join(host, "untouched")
	if err := os.WriteFile(marker, []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rel := strings.Repeat("../", 12) + strings.TrimPrefix(host, "/")
	hostile := tarGz(t, [][2]string{{"link", "->" + host}, {"link/pwned", "x"}, {"rel", "->" + rel}, {"rel/pwned2", "y"}})
	files := map[string]string{
		"Dockerfile": fmt.Sprintf(`
FROM %s
RUN ln -s %s /abs && ln -s %s /up && mkdir -p /stage
WORKDIR /abs/wd
COPY f.txt /abs/untouched
COPY f.txt /up/copied-up.txt
COPY dir /abs/dir/
ADD hostile.tar.gz /abs/unpacked/
ADD hostile.tar.gz /stage/
WORKDIR /up/wd2
`, baseImage, host, rel),
		"f.txt": "in the image\n", "dir/a": "a\n", "hostile.tar.gz": string(hostile),
	}
	dir := writeContext(t, files)
	ref := "localhost/knast-build-it/symlinks:latest"
	out, err := knast(t, "build", "-t", ref, dir)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	ents, _ := os.ReadDir(host)
	if len(ents) != 1 {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the host directory was written to: %v", names)
	}
	if b, _ := os.ReadFile(marker); string(b) != "host\n" {
		t.Errorf("host file overwritten: %q", b)
	}
	img := knastImage(t, ref)
	inside := filepath.Join(img.rootfs, host)
	wantFile(t, inside, "untouched", "in the image\n")
	wantFile(t, inside, "copied-up.txt", "in the image\n")
	wantFile(t, inside, "dir/a", "a\n")
	// The archive's symlinks resolve inside the directory it is extracted to: its entries land
	// there, under the host path, never on the host.
	var landed []string
	filepath.WalkDir(img.rootfs, func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), "pwned") {
			landed = append(landed, strings.TrimPrefix(p, img.rootfs))
		}
		return nil
	})
	if len(landed) != 4 {
		t.Errorf("the archive's entries through symlinks landed at %v, want 4 paths inside the rootfs", landed)
	}
	for _, d := range []string{"wd", "wd2"} {
		if fi, err := os.Stat(filepath.Join(inside, d)); err != nil || !fi.IsDir() {
			t.Errorf("WORKDIR %s not made inside the rootfs: %v", d, err)
		}
	}

	// A context symlink leading out of the context names nothing.
	ctx := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nCOPY out/hostname /h\n"})
	if err := os.Symlink("/etc", filepath.Join(ctx, "out")); err != nil {
		t.Fatal(err)
	}
	out, err = knast(t, "build", ctx)
	if err == nil || !strings.Contains(out, "out/hostname: no such file or directory in the build context") {
		t.Errorf("COPY through a context symlink to /etc: err %v\n%s", err, out)
	}
}

// A rebuild takes every filesystem step from the cache; --no-cache none; a changed input misses from
// its step on.
func TestBuildCache(t *testing.T) {
	files := map[string]string{
		"Dockerfile": "FROM " + baseImage + "\nARG V=1\nRUN echo ran-first-$V | tee /first\nCOPY a.txt /a.txt\nRUN echo ran-second | tee /second\n",
		"a.txt":      "one\n",
	}
	dir := writeContext(t, files)
	ref := "localhost/knast-build-it/cache:latest"
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	build := func(args ...string) string {
		t.Helper()
		out, err := knast(t, append(append([]string{"build", "-t", ref}, args...), dir)...)
		if err != nil {
			t.Fatalf("build %v: %v\n%s", args, err, out)
		}
		return out
	}
	cases := []struct {
		name   string
		prep   func()
		args   []string
		cached int
		ran    []string
	}{
		{"cold", nil, []string{"--no-cache"}, 0, []string{"ran-first-1", "ran-second"}},
		{"rebuild", nil, nil, 3, nil},
		{"no-cache", nil, []string{"--no-cache"}, 0, []string{"ran-first-1", "ran-second"}},
		{"changed file", func() { os.WriteFile(filepath.Join(dir, "a.txt"), []byte("two\n"), 0o644) }, nil, 1, []string{"ran-second"}},
		{"changed build arg", nil, []string{"--build-arg", "V=2"}, 0, []string{"ran-first-2", "ran-second"}},
		{"same build arg again", nil, []string{"--build-arg", "V=2"}, 3, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prep != nil {
				tc.prep()
			}
			out := build(tc.args...)
			if n := strings.Count(out, "--> Using cache"); n != tc.cached {
				t.Errorf("%d steps from the cache, want %d:\n%s", n, tc.cached, out)
			}
			for _, r := range []string{"ran-first-1", "ran-first-2", "ran-second"} {
				want := false
				for _, w := range tc.ran {
					want = want || w == r
				}
				// The RUN line itself echoes the command; the output line is the word alone.
				if got := strings.Contains(out, "\n"+r+"\n"); got != want {
					t.Errorf("RUN output %q present %v, want %v:\n%s", r, got, want, out)
				}
			}
		})
	}
	img := knastImage(t, ref)
	wantFile(t, img.rootfs, "a.txt", "two\n")
	wantFile(t, img.rootfs, "first", "ran-first-2\n")
}

// image prune --build-cache empties the build cache (steps, layers, unpacked bases), which the next
// build then misses entirely; while a build runs it refuses and changes nothing.
func TestBuildCachePrune(t *testing.T) {
	buildDir := filepath.Join(storage, "build")
	count := func(sub string) int {
		ents, _ := os.ReadDir(filepath.Join(buildDir, sub))
		return len(ents)
	}
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN echo pruned-step | tee /p\n"})
	ref := "localhost/knast-build-it/prune:latest"
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	if out, err := knast(t, "build", "-t", ref, dir); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if count("cache") == 0 || count("layers") == 0 || count("base") == 0 {
		t.Fatalf("after a build: cache %d, layers %d, base %d entries; want some of each", count("cache"), count("layers"), count("base"))
	}

	// A build in progress holds the cache.
	slow := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN sleep 3\n"})
	cmd := exec.Command(knastBin, "--storage", storage, "--root", stateRoot, "build", "--no-cache", slow)
	slowOut := filepath.Join(t.TempDir(), "out")
	f, err := os.Create(slowOut)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	// A build makes its own lock (build/tmp/ID.lock) once it holds the cache's.
	lockGlob := filepath.Join(buildDir, "tmp", "*.lock")
	before, _ := filepath.Glob(lockGlob)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if locks, _ := filepath.Glob(lockGlob); len(locks) > len(before) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the slow build made no lock in 30s")
		}
	}
	steps := count("cache")
	out, err := knast(t, "image", "prune", "--build-cache")
	if err == nil || !strings.Contains(out, "a build is running") {
		t.Errorf("prune --build-cache during a build: want a refusal, got err %v:\n%s", err, out)
	}
	if count("cache") != steps || count("base") == 0 {
		t.Errorf("the refused prune changed the cache: %d steps, was %d; base %d", count("cache"), steps, count("base"))
	}
	if err := cmd.Wait(); err != nil {
		b, _ := os.ReadFile(slowOut)
		t.Fatalf("the slow build: %v\n%s", err, b)
	}

	out, err = knast(t, "image", "prune", "--build-cache")
	if err != nil {
		t.Fatalf("prune --build-cache: %v\n%s", err, out)
	}
	var gotSteps, gotDirs int
	if _, err := fmt.Sscanf(out, "Deleted build cache: %d steps, %d directories", &gotSteps, &gotDirs); err != nil || gotSteps < 2 || gotDirs < 3 {
		t.Errorf("prune report %q: want at least the 2 steps, their 2 layers and a base", out)
	}
	for _, sub := range []string{"cache", "layers", "base"} {
		if n := count(sub); n != 0 {
			t.Errorf("%d entries left in build/%s", n, sub)
		}
	}
	out, err = knast(t, "build", "-t", ref, dir)
	if err != nil {
		t.Fatalf("build after the prune: %v\n%s", err, out)
	}
	if strings.Contains(out, "--> Using cache") || !strings.Contains(out, "\npruned-step\n") {
		t.Errorf("the build after the prune took a step from the cache or did not run it:\n%s", out)
	}
}

// Heredocs, SHELL, ONBUILD, HEALTHCHECK, ADD (archive, URL), --target, --output and the built image
// running with knast run --image.
func TestBuildFeatures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/dl/remote.txt" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Last-Modified", "Mon, 02 Jan 2006 15:04:05 GMT")
		fmt.Fprint(w, "remote content\n")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	url := "http://" + ln.Addr().String() + "/dl/remote.txt"

	parent := "localhost/knast-build-it/onbuild-parent:latest"
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nONBUILD RUN echo triggered > /onbuild.txt\nHEALTHCHECK --interval=5s CMD true\n"})
	if out, err := knast(t, "build", "-t", parent, dir); err != nil {
		t.Fatalf("parent: %v\n%s", err, out)
	}
	t.Cleanup(func() { knast(t, "image", "rm", parent) })

	files := map[string]string{
		"Dockerfile": `
FROM ` + parent + ` AS base
SHELL ["/bin/sh", "-ec"]
ARG TARGETARCH
RUN echo "$TARGETARCH" > /arch.txt
RUN <<EOF
echo one > /heredoc.txt
echo two >> /heredoc.txt
EOF
RUN <<EOT
#!/bin/sh
echo "script $0" > /script.txt
EOT
RUN cat <<INNER > /inner.txt
inner $HOME
INNER
COPY <<EOF /copied-heredoc.txt
copied
EOF
ADD archive.tar.gz /unpacked/
ADD --chmod=0644 ` + url + ` /downloads/
ADD ` + url + ` /renamed.txt
COPY --from=` + baseImage + ` /opt/data/sub/b /from-image.txt
FROM base AS unused
RUN exit 1
FROM base
CMD ["cat", "/heredoc.txt"]
`,
		"archive.tar.gz": string(tarGz(t, [][2]string{{"x/y.txt", "from the archive\n"}})),
	}
	dir = writeContext(t, files)
	ref := "localhost/knast-build-it/features:latest"
	oci := filepath.Join(t.TempDir(), "out.tar")
	out, err := knast(t, "build", "-t", ref, "--output", "type=oci,dest="+oci, dir)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	if !strings.Contains(out, "ONBUILD RUN echo triggered") {
		t.Errorf("the ONBUILD trigger is not shown:\n%s", out)
	}
	img := readArchive(t, oci)
	wantFile(t, img.rootfs, "onbuild.txt", "triggered\n")
	wantFile(t, img.rootfs, "heredoc.txt", "one\ntwo\n")
	wantFile(t, img.rootfs, "script.txt", "script /dev/pipes/EOT\n")
	wantFile(t, img.rootfs, "inner.txt", "inner /root\n")
	wantFile(t, img.rootfs, "copied-heredoc.txt", "copied\n")
	wantFile(t, img.rootfs, "unpacked/x/y.txt", "from the archive\n")
	wantFile(t, img.rootfs, "downloads/remote.txt", "remote content\n")
	wantMode(t, img.rootfs, "downloads/remote.txt", 0o644)
	wantMode(t, img.rootfs, "renamed.txt", 0o600)
	wantFile(t, img.rootfs, "from-image.txt", "opt/data/sub/b\n")
	wantFile(t, img.rootfs, "arch.txt", runtime.GOARCH+"\n")
	if _, err := os.Stat(filepath.Join(img.rootfs, "dev/pipes")); err == nil {
		t.Errorf("the heredoc script's mount point is in the image")
	}
	pc := string(knastImage(t, parent).raw)
	if !strings.Contains(pc, `"OnBuild":["RUN echo triggered \u003e /onbuild.txt"]`) || !strings.Contains(pc, `"Healthcheck":{"Test":["CMD-SHELL","true"],"Interval":5000000000}`) {
		t.Errorf("the parent's config lacks ONBUILD/HEALTHCHECK:\n%s", pc)
	}
	if strings.Contains(string(img.raw), "OnBuild") {
		t.Errorf("the child inherited the ONBUILD trigger:\n%s", img.raw)
	}

	// The image runs.
	out, err = knast(t, "run", "--rm", "--image", ref)
	if err != nil || out != "one\ntwo\n" {
		t.Errorf("knast run --image: %v, output %q", err, out)
	}

	// --target builds the named stage only.
	tgt := "localhost/knast-build-it/target:latest"
	out, err = knast(t, "build", "-t", tgt, "--target", "base", dir)
	if err != nil || strings.Contains(out, "exit 1") {
		t.Errorf("--target base: %v\n%s", err, out)
	}
	knast(t, "image", "rm", tgt)
}

// RUN's network: none leaves the step only its loopback, host shares the host's interfaces, a knast
// network attaches the step's container (eth0 with a lease, the default route) and detaches it after.
func TestBuildNetwork(t *testing.T) {
	t.Run("knast network", func(t *testing.T) {
		const netName = "kni-build"
		if out, err := knast(t, "network", "create", netName, "--subnet", "10.231.107.0/24", "--bridge", "kni107"); err != nil {
			t.Fatalf("network create: %v\n%s", err, out)
		}
		defer knast(t, "network", "rm", netName)
		dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\n" +
			"RUN ip -4 -o addr show eth0 | grep -q 'inet 10.231.107.' && ip route | grep -q 'default via 10.231.107.1'\n"})
		if out, err := knast(t, "build", "--no-cache", "--network", netName, dir); err != nil {
			t.Fatalf("--network %s: %v\n%s", netName, err, out)
		}
		out, err := knast(t, "network", "inspect", netName)
		var ins []struct {
			Attachments []json.RawMessage `json:"attachments"`
		}
		if err != nil || json.Unmarshal([]byte(out), &ins) != nil || len(ins) != 1 || len(ins[0].Attachments) != 0 {
			t.Errorf("after the build the network still has attachments (or inspect failed: %v):\n%s", err, out)
		}
	})

	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN test \"$(grep -c : /proc/net/dev)\" -eq 1\n"})
	cases := []struct {
		network string
		wantErr bool
	}{
		{"none", false},
		{"host", true},
	}
	for _, tc := range cases {
		t.Run(tc.network, func(t *testing.T) {
			out, err := knast(t, "build", "--no-cache", "--network", tc.network, dir)
			if (err != nil) != tc.wantErr {
				t.Errorf("--network %s: err %v, want error %v\n%s", tc.network, err, tc.wantErr, out)
			}
			if tc.wantErr && !strings.Contains(out, "exited with status 1") {
				t.Errorf("--network %s: %s", tc.network, out)
			}
		})
	}
}

// SOURCE_DATE_EPOCH makes the image reproducible: a rebuild from the cache is the same image.
func TestBuildSourceDateEpoch(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN echo x > /x\nENV A=1\n"})
	ref := "localhost/knast-build-it/epoch:latest"
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	var ids []string
	for i := 0; i < 2; i++ {
		out, err := knast(t, "build", "-q", "-t", ref, "--build-arg", "SOURCE_DATE_EPOCH=1000000000", dir)
		if err != nil {
			t.Fatalf("build: %v\n%s", err, out)
		}
		ids = append(ids, strings.TrimSpace(out))
	}
	if ids[0] != ids[1] || !strings.HasPrefix(ids[0], "sha256:") {
		t.Errorf("image IDs %q: want one and the same", ids)
	}
	img := knastImage(t, ref)
	if img.cfg.Created == nil || img.cfg.Created.Unix() != 1000000000 {
		t.Errorf("created %v, want the epoch 1000000000", img.cfg.Created)
	}
}

// The mountpoints a RUN container needs (/etc/hosts, /etc/resolv.conf through a dangling symlink,
// /proc, ...) are made by the runtime but never end up in a layer.
func TestBuildRunLeavesNoMountpoints(t *testing.T) {
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + " AS base\nRUN mkdir /out && ln -s ../run/resolve/stub.conf /out/resolv.conf && cp /etc/passwd /etc/group /out/\nFROM scratch\nCOPY --from=base /bin /bin\nCOPY --from=base /out/ /etc/\nRUN true\n"})
	ref := "localhost/knast-build-it/mountpoints:latest"
	if out, err := knast(t, "build", "-t", ref, dir); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Cleanup(func() { knast(t, "image", "rm", ref) })
	img := knastImage(t, ref)
	if img.layers != 2 {
		t.Errorf("%d layers, want 2 (RUN true changes nothing)", img.layers)
	}
	if h := img.cfg.History; len(h) == 0 || !h[len(h)-1].EmptyLayer {
		t.Errorf("the last step is not an empty layer: %+v", h)
	}
	if l, err := os.Readlink(filepath.Join(img.rootfs, "etc/resolv.conf")); err != nil || l != "../run/resolve/stub.conf" {
		t.Errorf("/etc/resolv.conf -> %q (%v)", l, err)
	}
	for _, p := range []string{"run", "etc/hosts", "proc", "sys", "dev"} {
		if _, err := os.Lstat(filepath.Join(img.rootfs, p)); err == nil {
			t.Errorf("/%s is in the image", p)
		}
	}
}
