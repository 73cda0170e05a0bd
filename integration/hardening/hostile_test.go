//go:build linux

package hardening

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestHostileImages loads crafted images (`knast image load`) and makes bundles of them (`knast
// bundle`) for every layer attack class of DESIGN.md §7, each aimed at a canary directory on the
// host; every one must be refused (load or bundle fails) or confined (what it writes lands inside
// the rootfs), and the canary must be untouched. internal/image/unpack's unit tests cover the same
// classes against unpack.Unpack; this goes through the CLI, the store and the bundle code.
func TestHostileImages(t *testing.T) {
	tally(t)
	type outcome int
	const (
		refused  outcome = iota // load or bundle fails
		confined                // bundle succeeds; inRoot exists inside the rootfs
		either                  // refusing or confining are both correct
	)
	negSize := func(t *testing.T) []byte {
		b := layerTar(t, file("neg", "abcdef"))
		copy(b[124:136], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) // base-256 -2
		return b
	}
	hugeSize := func(t *testing.T) []byte {
		var b bytes.Buffer
		tw := tar.NewWriter(&b)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "huge", Size: 1 << 62, Mode: 0o644, Format: tar.FormatPAX})
		tw.Write([]byte("abc"))
		return b.Bytes()
	}
	tests := []struct {
		name   string
		layers func(t *testing.T, out string) [][]byte
		opts   func(out string) archiveOpts
		want   outcome
		inRoot string // with confined: a path (OUT = the canary's path) that must exist in the rootfs
	}{
		{name: "dotdot name", want: refused, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, file(strings.Repeat("../", 12)+strings.TrimPrefix(out, "/")+"/keep", "pwned"))}
		}},
		{name: "absolute name", want: either, inRoot: "OUT/keep", layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, file(out+"/keep", "pwned"))}
		}},
		{name: "write through absolute symlink", want: confined, inRoot: "OUT/new", layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("a", out), file("a/keep", "pwned"), file("a/new", "pwned"), dir("a/sub/deeper"))}
		}},
		{name: "write through climbing symlink", want: confined, inRoot: "OUT/keep", layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("a", strings.Repeat("../", 12)+strings.TrimPrefix(out, "/")), file("a/keep", "pwned"))}
		}},
		{name: "symlink planted by a lower layer", want: confined, inRoot: "OUT/passwd", layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("etc2", out)), layerTar(t, file("etc2/passwd", "root::0:0::/:/bin/sh\n"))}
		}},
		{name: "hardlink to an absolute host path", want: refused, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, hardlink("h", out+"/passwd"))}
		}},
		{name: "hardlink climbing out", want: refused, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, hardlink("h", strings.Repeat("../", 12)+strings.TrimPrefix(out, "/")+"/passwd"))}
		}},
		{name: "hardlink through a symlink of a lower layer", want: refused, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("s", out)), layerTar(t, hardlink("h", "s/passwd"))}
		}},
		{name: "whiteouts under a symlinked dir", want: either, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("w", out)), layerTar(t, file("w/.wh.keep", ""), file("w/.wh.sub", ""), file("w/.wh..wh..opq", ""))}
		}},
		{name: "whiteout climbing out", want: refused, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, file(strings.Repeat("../", 12)+strings.TrimPrefix(out, "/")+"/.wh.keep", ""))}
		}},
		{name: "chmod chown xattr utimes through a symlink", want: either, layers: func(t *testing.T, out string) [][]byte {
			meta := func(h *tar.Header) {
				h.Mode, h.Uid, h.Gid = 0o7777, 4242, 4242
				h.PAXRecords = map[string]string{"SCHILY.xattr.user.pwned": "1", "SCHILY.xattr.trusted.pwned": "1"}
				h.ModTime = h.ModTime.AddDate(30, 0, 0)
			}
			return [][]byte{
				layerTar(t, symlink("m", out), symlink("p", out+"/passwd")),
				layerTar(t, with(dir("m"), meta), with(symlink("p", out+"/passwd"), meta), with(dir("m/sub"), meta)),
			}
		}},
		{name: "device and fifo through a symlink", want: either, layers: func(t *testing.T, out string) [][]byte {
			return [][]byte{layerTar(t, symlink("d", out),
				ent{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "d/fifo", Mode: 0o600}},
				ent{Header: tar.Header{Typeflag: tar.TypeChar, Name: "d/null", Mode: 0o666, Devmajor: 1, Devminor: 3}})}
		}},
		{name: "huge declared size", want: refused, layers: func(t *testing.T, out string) [][]byte { return [][]byte{hugeSize(t)} }},
		{name: "negative declared size", want: refused, layers: func(t *testing.T, out string) [][]byte { return [][]byte{negSize(t)} }},
		{name: "layer under another digest", want: refused,
			layers: func(t *testing.T, out string) [][]byte { return [][]byte{layerTar(t, file("x", "y"))} },
			opts: func(string) archiveOpts {
				return archiveOpts{layerDigest: func(int, string) string { return digestOf([]byte("something else")) }}
			}},
		{name: "declared blob size smaller", want: refused,
			layers: func(t *testing.T, out string) [][]byte { return [][]byte{layerTar(t, file("x", "y"))} },
			opts:   func(string) archiveOpts { return archiveOpts{layerSize: func(_ int, n int64) int64 { return n / 2 }} }},
		{name: "declared blob size negative", want: refused,
			layers: func(t *testing.T, out string) [][]byte { return [][]byte{layerTar(t, file("x", "y"))} },
			opts:   func(string) archiveOpts { return archiveOpts{layerSize: func(int, int64) int64 { return -1 }} }},
		{name: "blob missing from the archive", want: refused,
			layers: func(t *testing.T, out string) [][]byte { return [][]byte{layerTar(t, file("x", "y"))} },
			opts: func(string) archiveOpts {
				return archiveOpts{layerDigest: func(int, string) string { return digestOf([]byte("absent")) }, omitLayer: true}
			}},
		{name: "diff_id does not match the layer", want: refused,
			layers: func(t *testing.T, out string) [][]byte { return [][]byte{layerTar(t, file("x", "y"))} },
			opts:   func(string) archiveOpts { return archiveOpts{diffIDs: []string{digestOf([]byte("other"))}} }},
	}
	// knast bundle mounts an overlay of the store's layer cache (each layer unpacked on top of the
	// ones below) unless --copy asks for a plain unpacked copy: both paths meet every attack.
	modes := [][]string{nil}
	if h := (&env{t: t, ctx: t.Context(), root: t.TempDir(), dir: t.TempDir()}).runCtx(t.Context(), "bundle", "--help"); strings.Contains(h.stderr+h.stdout, "--copy") {
		modes = [][]string{{"--copy"}, nil}
	}
	for i, tc := range tests {
		for _, mode := range modes {
			name := tc.name
			if len(modes) > 1 {
				name += map[bool]string{true: " copy", false: " overlay"}[len(mode) > 0]
			}
			t.Run(name, func(t *testing.T) {
				hostileImage(t, i, tc.layers, tc.opts, tc.want == refused, tc.want == confined, tc.inRoot, mode)
			})
		}
	}
}

// hostileImage is one case of TestHostileImages in one bundle mode.
func hostileImage(t *testing.T, i int, layers func(*testing.T, string) [][]byte, opts func(string) archiveOpts,
	wantRefused, wantConfined bool, inRoot string, mode []string) {
	e := newEnv(t)
	c := newCanary(t)
	suite.hostile.Add(1)
	var o archiveOpts
	if opts != nil {
		o = opts(c.dir)
	}
	ref := fmt.Sprintf("localhost/hostile:%d", i)
	archive := ociArchive(t, ref, layers(t, c.dir), o)
	bundle := filepath.Join(e.dir, "bundle")
	load := e.run("image", "load", "-i", archive)
	var res result
	if load.code == 0 {
		res = e.run(append(append([]string{"bundle"}, mode...), ref, bundle)...)
		// A bare bundle's overlay rootfs stays mounted until a container made from it is deleted.
		defer unix.Unmount(filepath.Join(bundle, "rootfs"), unix.MNT_DETACH)
	}
	ok := load.code == 0 && res.code == 0
	switch {
	case wantRefused && ok:
		t.Errorf("hostile image accepted:\n%s\n%s", load, res)
	case wantConfined && !ok:
		t.Errorf("hostile image refused, want it confined inside the rootfs:\n%s\n%s", load, res)
	}
	if ok && inRoot != "" {
		p := strings.Replace(inRoot, "OUT", strings.TrimPrefix(c.dir, "/"), 1)
		if _, err := os.Lstat(filepath.Join(bundle, "rootfs", p)); err != nil {
			t.Errorf("want %s inside the rootfs: %v", p, err)
		}
	}
	if !ok {
		if _, err := os.Stat(bundle); !os.IsNotExist(err) {
			t.Errorf("a failed bundle left %s behind (%v)", bundle, err)
		}
	}
	c.check(t)
	checkStore(t, e.storage, false)
}

// TestHostileConfigs runs containers whose config or rootfs aims mounts, /proc, /dev, the cwd, masked
// and read-only paths and inherited fds at a host canary directory: each run is refused or the
// container's writes stay inside its rootfs, and the canary is untouched.
func TestHostileConfigs(t *testing.T) {
	tally(t)
	// The container's process tries to write through whatever it was given, and never fails itself.
	const script = `for p in /mnt/x /mnt/sub /mnt2/x /proc /dev /sys /ro /work . /proc/self/fd/*; do
  echo pwned > "$p/pwned" 2>/dev/null; echo pwned > "$p/keep" 2>/dev/null; mkdir "$p/sub/pwned" 2>/dev/null; done; true`
	tests := []struct {
		name string
		// rootfs changes the bundle's rootfs (out is the canary's path); edit changes the config.
		rootfs func(t *testing.T, rootfs, out string)
		edit   func(s *specs.Spec, out string)
		// passFd passes an fd of the canary to knast without --preserve-fds.
		passFd bool
	}{
		{name: "mount destination through an absolute symlink",
			rootfs: func(t *testing.T, r, out string) { mustSymlink(t, out, filepath.Join(r, "mnt")) },
			edit: func(s *specs.Spec, out string) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt/x", Type: "tmpfs", Source: "tmpfs"},
					specs.Mount{Destination: "/mnt/sub", Type: "bind", Source: "/usr/share", Options: []string{"rbind", "ro"}})
			}},
		{name: "mount destination through a climbing symlink",
			rootfs: func(t *testing.T, r, out string) {
				mustSymlink(t, strings.Repeat("../", 12)+strings.TrimPrefix(out, "/"), filepath.Join(r, "mnt2"))
			},
			edit: func(s *specs.Spec, out string) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: "/mnt2/x", Type: "tmpfs", Source: "tmpfs"})
			}},
		{name: "mount destination with dotdot",
			edit: func(s *specs.Spec, out string) {
				s.Mounts = append(s.Mounts, specs.Mount{Destination: strings.Repeat("/..", 12) + out, Type: "tmpfs", Source: "tmpfs"})
			}},
		{name: "proc is a symlink to the host",
			rootfs: func(t *testing.T, r, out string) { replaceWithSymlink(t, filepath.Join(r, "proc"), out) }},
		{name: "dev is a symlink to the host",
			rootfs: func(t *testing.T, r, out string) { replaceWithSymlink(t, filepath.Join(r, "dev"), out) }},
		{name: "sys is a symlink to the host",
			rootfs: func(t *testing.T, r, out string) { replaceWithSymlink(t, filepath.Join(r, "sys"), out) }},
		{name: "masked and read-only paths are symlinks to the host",
			rootfs: func(t *testing.T, r, out string) {
				mustSymlink(t, out, filepath.Join(r, "ro"))
				mustSymlink(t, out+"/keep", filepath.Join(r, "masked"))
			},
			edit: func(s *specs.Spec, out string) {
				s.Linux.ReadonlyPaths = append(s.Linux.ReadonlyPaths, "/ro")
				s.Linux.MaskedPaths = append(s.Linux.MaskedPaths, "/masked", "/ro/sub")
			}},
		{name: "cwd climbing out", edit: func(s *specs.Spec, out string) { s.Process.Cwd = strings.Repeat("/..", 12) + out }},
		{name: "cwd a symlink to the host",
			rootfs: func(t *testing.T, r, out string) { mustSymlink(t, out, filepath.Join(r, "work")) },
			edit:   func(s *specs.Spec, out string) { s.Process.Cwd = "/work" }},
		{name: "cwd in a leaked fd", passFd: true, edit: func(s *specs.Spec, out string) { s.Process.Cwd = "/proc/self/fd/3" }},
		{name: "host dir fd not preserved", passFd: true},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			c := newCanary(t)
			suite.hostile.Add(1)
			bundle := e.bundle(script, func(s *specs.Spec) {
				if tc.edit != nil {
					tc.edit(s, c.dir)
				}
			})
			if tc.rootfs != nil {
				tc.rootfs(t, filepath.Join(bundle, "rootfs"), c.dir)
			}
			id := fmt.Sprintf("hcfg-%d", i)
			var fds []*os.File
			if tc.passFd {
				f, err := os.Open(c.dir)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				fds = append(fds, f)
			}
			res := e.runWith(fds, "run", "--bundle", bundle, id)
			t.Logf("run: exit %d: %s", res.code, strings.TrimSpace(res.stderr))
			e.run("delete", "--force", id)
			c.check(t)
		})
	}
}

// runWith is run with extra files (fd 3, 4, ...) inherited by knast.
func (e *env) runWith(files []*os.File, args ...string) result {
	e.t.Helper()
	cmd := e.command(e.ctx, args...)
	cmd.ExtraFiles = files
	return finish(cmd, args, cmd.Run, e.dir)
}

func mustSymlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func replaceWithSymlink(t *testing.T, p, target string) {
	t.Helper()
	if err := os.RemoveAll(p); err != nil {
		t.Fatal(err)
	}
	mustSymlink(t, target, p)
}
