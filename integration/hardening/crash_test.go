//go:build linux

package hardening

import (
	crand "crypto/rand"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/knast/knast/internal/testutil"
)

// killAfter runs knast args and SIGKILLs it after d unless it finished first; killed says whether the
// kill landed while knast was still running.
func (e *env) killAfter(d time.Duration, args ...string) (r result, killed bool) {
	cmd := e.command(e.ctx, args...)
	var sent atomic.Bool
	r = finish(cmd, args, func() error {
		if err := cmd.Start(); err != nil {
			return err
		}
		t0 := time.Now()
		done := make(chan struct{})
		go func() {
			// The runtime's timers may fire a millisecond late (the netpoller waits in milliseconds),
			// longer than a C start lives: sleep to near d, then spin the last stretch.
			const spin = 2 * time.Millisecond
			if d > spin {
				select {
				case <-time.After(d - spin):
				case <-done:
					return
				}
			}
			for time.Since(t0) < d {
				select {
				case <-done:
					return
				default:
				}
			}
			sent.Store(true)
			cmd.Process.Signal(syscall.SIGKILL)
		}()
		err := cmd.Wait()
		close(done)
		return err
	}, e.dir)
	killed = sent.Load() && r.code == 128+int(syscall.SIGKILL)
	return r, killed
}

// runTimed runs args and returns how long the process lived once started: the window killAfter's
// delays fall in. Fork, exec and the harness's own files are outside it; for an operation that is
// short next to them (a C start lives about a millisecond) timing the whole run would put most delays
// after the process has gone.
func (e *env) runTimed(args ...string) (r result, lived time.Duration) {
	cmd := e.command(e.ctx, args...)
	r = finish(cmd, args, func() error {
		if err := cmd.Start(); err != nil {
			return err
		}
		t0 := time.Now()
		err := cmd.Wait()
		lived = time.Since(t0)
		return err
	}, e.dir)
	return r, lived
}

// crashOp is one operation the crash test interrupts: setup brings the container to where op starts,
// recover is what a user does after a crash, and rerun (every few crashes) proves the ID and the
// store are usable again.
type crashOp struct {
	name    string
	crashes int
	// tries is the attempts allowed per crash wanted (default 3). A start lives about a millisecond (C)
	// or a few (Go): under load, more of the kills aimed at so short a window arrive after it.
	tries int
	setup func(e *env, id string)
	op    func(id string) []string
}

// TestCrashConsistency SIGKILLs knast at random points of create, start, delete, run -d and pull (the
// delays are spread over each operation's measured duration; the product has no test hooks) and
// after each crash checks that `delete --force` (or, for pull, a rerun) leaves no mount, process,
// cgroup, state entry, half-written blob or corrupt database, and that the ID can be used again.
func TestCrashConsistency(t *testing.T) {
	tally(t)
	const sleeper = "exec sleep 3600"
	ops := []crashOp{
		{name: "create", crashes: 45, op: func(id string) []string { return []string{"create", "--bundle", "BUNDLE", id} }},
		{name: "start", crashes: 35, tries: 8, setup: func(e *env, id string) { e.must("create", "--bundle", e.dir+"/bundle", id) },
			op: func(id string) []string { return []string{"start", id} }},
		// --debug keeps the start in Go (the path of containers with poststart hooks).
		{name: "start in Go", crashes: 20, tries: 8, setup: func(e *env, id string) { e.must("create", "--bundle", e.dir+"/bundle", id) },
			op: func(id string) []string { return []string{"--debug", "start", id} }},
		{name: "delete running", crashes: 30, setup: func(e *env, id string) { e.must("run", "-d", "--bundle", e.dir+"/bundle", id) },
			op: func(id string) []string { return []string{"delete", "--force", id} }},
		{name: "delete created", crashes: 20, setup: func(e *env, id string) { e.must("create", "--bundle", e.dir+"/bundle", id) },
			op: func(id string) []string { return []string{"delete", id} }},
		{name: "run -d", crashes: 40, op: func(id string) []string { return []string{"run", "-d", "--bundle", "BUNDLE", id} }},
	}
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			e := newEnv(t)
			bundle := e.bundle(sleeper)
			if err := os.Rename(bundle, filepath.Join(e.dir, "bundle")); err != nil {
				t.Fatal(err)
			}
			bundle = filepath.Join(e.dir, "bundle")
			args := func(id string) []string {
				a := op.op(id)
				for i := range a {
					if a[i] == "BUNDLE" {
						a[i] = bundle
					}
				}
				return a
			}
			id := "crash-" + strings.ReplaceAll(op.name, " ", "-")
			// Measure the operation uninterrupted.
			var total time.Duration
			for range 3 {
				if op.setup != nil {
					op.setup(e, id)
				}
				r, lived := e.runTimed(args(id)...)
				if r.code != 0 {
					t.Fatalf("uninterrupted: %s", r)
				}
				total += lived
				e.must("delete", "--force", id)
			}
			dur := total / 3
			crashes, attempts, tries := 0, 0, op.tries
			if tries == 0 {
				tries = 3
			}
			for crashes < op.crashes && attempts < tries*op.crashes && !t.Failed() {
				attempts++
				if op.setup != nil {
					op.setup(e, id)
				}
				// Spread over the whole operation, a little past its end so the last steps are hit too.
				delay := time.Duration(rand.Int64N(int64(dur) * 11 / 10))
				r, killed := e.killAfter(delay, args(id)...)
				if killed {
					crashes++
					suite.crashes.Add(1)
				} else if r.code != 0 {
					t.Errorf("%s (not killed) failed: %s", op.name, r)
				}
				e.recoverAndCheck(id, fmt.Sprintf("%s killed after %v", op.name, delay))
				if crashes%5 == 0 && killed {
					// The ID is usable again: the whole lifecycle runs.
					e.must("run", "-d", "--bundle", bundle, id)
					e.must("delete", "--force", id)
				}
			}
			t.Logf("%s: %d crashes in %d attempts over %v", op.name, crashes, attempts, dur)
			if crashes < op.crashes {
				t.Errorf("%s: only %d of %d crashes landed in %d attempts", op.name, crashes, op.crashes, attempts)
			}
		})
	}
	t.Run("pull", func(t *testing.T) { crashPull(t, 40) })
}

// recoverAndCheck runs delete --force and checks nothing of id is left and the database lists.
func (e *env) recoverAndCheck(id, what string) {
	t := e.t
	t.Helper()
	if r := e.run("delete", "--force", id); r.code != 0 {
		t.Errorf("%s: delete --force: %s", what, r)
	}
	if r := e.run("state", id); r.code == 0 || !strings.Contains(r.stderr, "does not exist") {
		t.Errorf("%s: after delete --force, state: %s", what, r)
	}
	r := e.run("list", "--format", "json")
	var list []map[string]any
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &list) != nil {
		t.Errorf("%s: the database does not list: %s", what, r)
	}
	if leaks := e.leaks(); len(leaks) > 0 {
		t.Errorf("%s: left behind:\n  %s", what, strings.Join(leaks, "\n  "))
		e.checkLeaks() // clean up so the next crash starts clean
	}
}

// crashPull pushes an image with a multi-megabyte layer to a local registry, then SIGKILLs pulls of
// it at random points: after every crash the store holds only blobs matching their digests, a rerun
// of the pull succeeds and leaves STORAGE/tmp empty, and the names database lists the image.
func crashPull(t *testing.T, want int) {
	e := newEnv(t)
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatalf("docker-registry is needed (Debian package docker-registry): %v", err)
	}
	addr := testutil.StartRegistry(t)
	ref := addr + "/hardening/crash:1"
	rootfs := filepath.Join(t.TempDir(), "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 6<<20)
	crand.Read(big)
	if err := os.WriteFile(filepath.Join(rootfs, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "img.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{Name: ref, Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	e.must("image", "load", "-i", archive)
	e.must("push", "--tls-verify=false", ref)
	e.storage = filepath.Join(e.dir, "pulled")

	pull := []string{"pull", "--tls-verify=false", "-q", ref}
	reset := func() {
		e.must("image", "rm", ref)
		e.must("image", "prune")
	}
	var total time.Duration
	for range 3 {
		r, lived := e.runTimed(pull...)
		if r.code != 0 {
			t.Fatalf("uninterrupted pull: %s", r)
		}
		total += lived
		reset()
	}
	dur := total / 3
	crashes, attempts := 0, 0
	for crashes < want && attempts < 3*want && !t.Failed() {
		attempts++
		delay := time.Duration(rand.Int64N(int64(dur) * 11 / 10))
		r, killed := e.killAfter(delay, pull...)
		if killed {
			crashes++
			suite.crashes.Add(1)
		} else if r.code != 0 {
			t.Errorf("pull (not killed) failed: %s", r)
		}
		what := fmt.Sprintf("pull killed after %v", delay)
		checkStore(t, e.storage, true) // partial downloads may stay for a resume
		if r := e.run("images", "--format", "json"); r.code != 0 || !json.Valid([]byte(r.stdout)) {
			t.Errorf("%s: the names database does not list: %s", what, r)
		}
		if r := e.run(pull...); r.code != 0 {
			t.Errorf("%s: rerun: %s", what, r)
		}
		checkStore(t, e.storage, false)
		if r := e.run("image", "inspect", ref); r.code != 0 {
			t.Errorf("%s: image not listed after the rerun", what)
		}
		reset()
	}
	t.Logf("pull: %d crashes in %d attempts over %v", crashes, attempts, dur)
	if crashes < want {
		t.Errorf("pull: only %d of %d crashes landed in %d attempts", crashes, want, attempts)
	}
}
