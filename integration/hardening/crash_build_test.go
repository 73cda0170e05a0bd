//go:build linux

package hardening

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/knast/knast/internal/testutil"
)

// TestCrashBuild SIGKILLs `knast build` at random points (unpacking the base, mounting stage overlays,
// running RUN containers, writing layers, committing) and checks after each crash that the next build
// alone — it sweeps a dead build's RUN containers, mounts and temp dir — succeeds and leaves no
// container, mount, process, cgroup or state behind, with a store whose blobs match their digests.
func TestCrashBuild(t *testing.T) {
	e := newEnv(t)
	const base, tag, want = "localhost/hardening/build-base:1", "localhost/hardening/built:1", 20
	rootfs := filepath.Join(e.dir, "base-rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(e.dir, "base.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{Name: base, Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.must("image", "load", "-i", archive)
	ctxDir := filepath.Join(e.dir, "context")
	if err := os.MkdirAll(ctxDir, 0o755); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"Dockerfile": "FROM " + base + "\n" +
			"RUN mkdir -p /data && for i in $(seq 1 200); do echo $i > /data/f$i; done\n" +
			"COPY payload /payload\n" +
			"RUN rm -f /data/f1 && sleep 0.2\n" +
			"ENV BUILT=1\n",
		"payload": strings.Repeat("knast\n", 1<<14),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(ctxDir, name), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	build := []string{"build", "--no-cache", "-q", "-t", tag, ctxDir}
	var total time.Duration
	for range 3 {
		r, lived := e.runTimed(build...)
		if r.code != 0 {
			t.Fatalf("uninterrupted build: %s", r)
		}
		total += lived
	}
	dur := total / 3
	// The next build sweeps what the killed one left (its RUN containers, stage overlays, temp dir).
	crashLoop(t, e, "build", want, 3, dur, build, nil, func(what string) {
		if r := e.run(build...); r.code != 0 {
			t.Errorf("%s: rerun: %s", what, r)
		}
		checkBuilt(t, e, tag, what)
	})

	// image prune --build-cache killed midway: the next build uses only whole cached steps (a step's
	// record goes before its layer), and its image holds every file.
	cached := []string{"build", "-q", "-t", tag, ctxDir}
	prune := []string{"image", "prune", "--build-cache"}
	// The first prune also removes what the crashed builds left; the second one is what is killed.
	e.must(cached...)
	e.must(prune...)
	e.must(cached...)
	r, pruneDur := e.runTimed(prune...)
	if r.code != 0 {
		t.Fatalf("uninterrupted prune: %s", r)
	}
	crashLoop(t, e, "prune --build-cache", 5, 8, pruneDur, prune, func() { e.must(cached...) }, func(what string) {
		if r := e.run(cached...); r.code != 0 {
			t.Errorf("%s: build: %s", what, r)
		}
		checkBuilt(t, e, tag, what)
	})
}

// crashLoop SIGKILLs args after random delays within 1.1×dur until want kills landed, in at most
// tries×want attempts. prep (optional) runs before each attempt. Then after does what a user would do
// next, and the store and the host must be clean.
func crashLoop(t *testing.T, e *env, name string, want, tries int, dur time.Duration, args []string, prep func(), after func(what string)) {
	t.Helper()
	crashes, attempts := 0, 0
	for crashes < want && attempts < tries*want && !t.Failed() {
		attempts++
		if prep != nil {
			prep()
		}
		delay := time.Duration(rand.Int64N(int64(dur) * 11 / 10))
		r, killed := e.killAfter(delay, args...)
		if killed {
			crashes++
			suite.crashes.Add(1)
		} else if r.code != 0 {
			t.Errorf("%s (not killed) failed: %s", name, r)
		}
		what := fmt.Sprintf("%s killed after %v", name, delay)
		after(what)
		checkStore(t, e.storage, false)
		if leaks := e.leaks(); len(leaks) > 0 {
			t.Errorf("%s: left behind:\n  %s", what, strings.Join(leaks, "\n  "))
			e.checkLeaks()
		}
	}
	t.Logf("%s: %d crashes in %d attempts over %v", name, crashes, attempts, dur)
	if crashes < want {
		t.Errorf("%s: only %d of %d crashes landed in %d attempts", name, crashes, want, attempts)
	}
}

// checkBuilt runs the built image and checks it holds what the Dockerfile made.
func checkBuilt(t *testing.T, e *env, tag, what string) {
	t.Helper()
	if r := e.run("run", "--rm", "--image", tag, "--", "sh", "-c", "test -f /payload && test ! -e /data/f1 && test -f /data/f200"); r.code != 0 {
		t.Errorf("%s: the image does not hold its files: %s", what, r)
	}
}
