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
		start := time.Now()
		e.must(build...)
		total += time.Since(start)
	}
	dur := total / 3
	crashes, attempts := 0, 0
	for crashes < want && attempts < 3*want && !t.Failed() {
		attempts++
		delay := time.Duration(rand.Int64N(int64(dur) * 11 / 10))
		r, killed := e.killAfter(delay, build...)
		if killed {
			crashes++
			suite.crashes.Add(1)
		} else if r.code != 0 {
			t.Errorf("build (not killed) failed: %s", r)
		}
		what := fmt.Sprintf("build killed after %v", delay)
		// The next build sweeps what the killed one left (its RUN containers, stage overlays, temp dir).
		if r := e.run(build...); r.code != 0 {
			t.Errorf("%s: rerun: %s", what, r)
		}
		if r := e.run("run", "--rm", "--image", tag, "--", "sh", "-c", "test -f /payload && test ! -e /data/f1 && test -f /data/f200"); r.code != 0 {
			t.Errorf("%s: the rebuilt image does not hold its files: %s", what, r)
		}
		checkStore(t, e.storage, false)
		if leaks := e.leaks(); len(leaks) > 0 {
			t.Errorf("%s: left behind after the rerun:\n  %s", what, strings.Join(leaks, "\n  "))
			e.checkLeaks()
		}
	}
	t.Logf("build: %d crashes in %d attempts over %v", crashes, attempts, dur)
	if crashes < want {
		t.Errorf("build: only %d of %d crashes landed in %d attempts", crashes, want, attempts)
	}

	// image prune --build-cache killed midway: the next build uses only whole cached steps (a step's
	// record goes before its layer), and its image holds every file.
	cached := []string{"build", "-q", "-t", tag, ctxDir}
	prune := []string{"image", "prune", "--build-cache"}
	// The first prune also removes what the crashed builds left; the second one is what is killed.
	e.must(cached...)
	e.must(prune...)
	e.must(cached...)
	start := time.Now()
	e.must(prune...)
	pruneDur := time.Since(start)
	const wantPrune = 5
	crashes, attempts = 0, 0
	for crashes < wantPrune && attempts < 8*wantPrune && !t.Failed() {
		attempts++
		e.must(cached...)
		delay := time.Duration(rand.Int64N(int64(pruneDur) * 11 / 10))
		r, killed := e.killAfter(delay, prune...)
		if killed {
			crashes++
			suite.crashes.Add(1)
		} else if r.code != 0 {
			t.Errorf("prune --build-cache (not killed) failed: %s", r)
		}
		what := fmt.Sprintf("prune --build-cache killed after %v", delay)
		if r := e.run(cached...); r.code != 0 {
			t.Errorf("%s: build: %s", what, r)
		}
		if r := e.run("run", "--rm", "--image", tag, "--", "sh", "-c", "test -f /payload && test ! -e /data/f1 && test -f /data/f200"); r.code != 0 {
			t.Errorf("%s: the image built on the cache left does not hold its files: %s", what, r)
		}
		checkStore(t, e.storage, false)
		if leaks := e.leaks(); len(leaks) > 0 {
			t.Errorf("%s: left behind:\n  %s", what, strings.Join(leaks, "\n  "))
			e.checkLeaks()
		}
	}
	t.Logf("prune --build-cache: %d crashes in %d attempts over %v", crashes, attempts, pruneDur)
	if crashes < wantPrune {
		t.Errorf("prune --build-cache: only %d of %d crashes landed in %d attempts", crashes, wantPrune, attempts)
	}
}
