package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Each case applies hostile layers into base/rootfs with a sentinel directory at base/outside
// and proves the sentinel is untouched; wantErr says whether the layers must be refused.
func TestHostileLayers(t *testing.T) {
	type tc struct {
		name    string
		layers  func(out string) [][]ent
		wantErr error  // nil: applies; ErrUnsafePath etc.: refused with that error
		inRoot  string // a path that must exist inside the root afterwards ("" none)
	}
	tests := []tc{
		{name: "dotdot name", layers: func(string) [][]ent { return [][]ent{{file("../outside/keep", "pwned")}} }, wantErr: ErrUnsafePath},
		{name: "inner dotdot", layers: func(string) [][]ent { return [][]ent{{file("a/../../outside/keep", "pwned")}} }, wantErr: ErrUnsafePath},
		{name: "absolute name", layers: func(o string) [][]ent { return [][]ent{{file(o+"/keep", "pwned")}} }, wantErr: ErrUnsafePath},
		{name: "dir dotdot", layers: func(string) [][]ent { return [][]ent{{dir("../outside/new")}} }, wantErr: ErrUnsafePath},
		{name: "write through absolute symlink", layers: func(o string) [][]ent {
			return [][]ent{{symlink("a", o), file("a/keep", "pwned"), file("a/new", "pwned")}}
		}, inRoot: "OUT/new"},
		{name: "write through relative climbing symlink", layers: func(string) [][]ent {
			return [][]ent{{symlink("a", "../../../../../outside"), file("a/keep", "pwned")}}
		}, inRoot: "outside/keep"},
		{name: "symlink planted by a lower layer", layers: func(o string) [][]ent {
			return [][]ent{{symlink("etc", o)}, {file("etc/passwd", "root::0:0::/:/bin/sh\n"), dir("etc/sub/x")}}
		}, inRoot: "OUT/sub/x"},
		{name: "symlink chain", layers: func(string) [][]ent {
			return [][]ent{{symlink("a", "b"), symlink("b", "c/../../.."), dir("c"), file("a/outside/keep", "pwned")}}
		}, inRoot: "outside/keep"},
		{name: "symlink loop", layers: func(string) [][]ent {
			return [][]ent{{symlink("a", "b"), symlink("b", "a"), file("a/x", "")}}
		}, wantErr: errors.New("loop")},
		{name: "file over symlink replaces the link", layers: func(o string) [][]ent {
			return [][]ent{{symlink("p", o+"/passwd")}, {file("p", "pwned")}}
		}, inRoot: "p"},
		{name: "metadata of a symlink does not reach its target", layers: func(o string) [][]ent {
			return [][]ent{{with(symlink("p", o+"/passwd"), func(h *tar.Header) { h.Uid, h.Gid, h.Mode = 4242, 4242, 0o7777 }),
				with(symlink("d", o), func(h *tar.Header) { h.Uid = 4242 })}}
		}, inRoot: "p"},
		{name: "dir entry over a symlinked dir", layers: func(o string) [][]ent {
			return [][]ent{{symlink("d", o)}, {with(dir("d"), func(h *tar.Header) { h.Mode = 0o777; h.Uid = 99 })}}
		}, inRoot: "d"},
		{name: "device through symlink", layers: func(o string) [][]ent {
			return [][]ent{{symlink("dev", o), {Header: tar.Header{Typeflag: tar.TypeFifo, Name: "dev/keep", Mode: 0o600}}}}
		}, inRoot: "OUT/keep"},
		{name: "hardlink dotdot", layers: func(string) [][]ent { return [][]ent{{hardlink("h", "../outside/passwd")}} }, wantErr: ErrUnsafePath},
		{name: "hardlink absolute", layers: func(o string) [][]ent { return [][]ent{{hardlink("h", o+"/passwd")}} }, wantErr: ErrUnsafePath},
		{name: "hardlink through absolute symlink", layers: func(o string) [][]ent {
			return [][]ent{{symlink("s", o)}, {hardlink("h", "s/passwd")}}
		}, wantErr: ErrUnsafePath},
		{name: "hardlink through relative symlink", layers: func(string) [][]ent {
			return [][]ent{{symlink("s", "../../../../outside"), hardlink("h", "s/passwd")}}
		}, wantErr: ErrUnsafePath},
		{name: "hardlink to a missing entry", layers: func(string) [][]ent { return [][]ent{{hardlink("h", "nope")}} }, wantErr: os.ErrNotExist},
		{name: "whiteout under symlinked dir", layers: func(o string) [][]ent {
			return [][]ent{{symlink("a", o)}, {whiteout("a/keep"), whiteout("a/sub"), whiteout("a/passwd")}}
		}},
		{name: "opaque under symlinked dir", layers: func(string) [][]ent {
			return [][]ent{{symlink("a", "../../outside")}, {file("a/.wh..wh..opq", "")}}
		}},
		{name: "whiteout of a symlink removes the link only", layers: func(o string) [][]ent {
			return [][]ent{{symlink("a", o)}, {whiteout("a")}}
		}},
		{name: "whiteout dotdot", layers: func(string) [][]ent { return [][]ent{{file(".wh..", "")}} }, wantErr: ErrUnsafePath},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			out, check := sentinel(t, base)
			root := filepath.Join(base, "rootfs")
			var layers [][]byte
			for _, l := range tc.layers(out) {
				layers = append(layers, layerTar(t, l...))
			}
			err := Unpack(context.Background(), root, readers(layers...), Options{})
			switch {
			case tc.wantErr == nil && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != nil && err == nil:
				t.Fatalf("want error %v, got none", tc.wantErr)
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr) && !strings.Contains(err.Error(), tc.wantErr.Error()):
				t.Fatalf("error %v, want %v", err, tc.wantErr)
			case err != nil && !strings.Contains(err.Error(), "entry "):
				t.Errorf("error does not name the entry: %v", err)
			}
			if tc.inRoot != "" {
				p := strings.Replace(tc.inRoot, "OUT", strings.TrimPrefix(out, "/"), 1)
				if _, err := os.Lstat(filepath.Join(root, p)); err != nil {
					t.Errorf("want %s inside the root: %v", p, err)
				}
			}
			check()
		})
	}
}

func TestBombs(t *testing.T) {
	big := bytes.Repeat([]byte{0}, 8<<20)
	many := make([]ent, 20)
	for i := range many {
		many[i] = file("f"+string(rune('a'+i)), "")
	}
	tests := []struct {
		name   string
		layer  func(t *testing.T) []byte
		opts   Options
		absent string
	}{
		{name: "file larger than MaxBytes", opts: Options{MaxBytes: 1 << 20}, absent: "big",
			layer: func(t *testing.T) []byte { return layerTar(t, file("big", string(big))) }},
		{name: "gzip bomb", opts: Options{MaxBytes: 1 << 20}, absent: "big",
			layer: func(t *testing.T) []byte { return gzipped(t, layerTar(t, file("big", string(big)))) }},
		{name: "zstd bomb", opts: Options{MaxBytes: 1 << 20}, absent: "big",
			layer: func(t *testing.T) []byte { return zstded(t, layerTar(t, file("big", string(big)))) }},
		{name: "too many entries", opts: Options{MaxEntries: 10},
			layer: func(t *testing.T) []byte { return layerTar(t, many...) }},
		{name: "huge declared size", absent: "huge",
			layer: func(t *testing.T) []byte { return hugeHeader(t, "huge", 1<<62) }},
		{name: "declared size over budget", opts: Options{MaxBytes: 1 << 20}, absent: "sparse",
			layer: func(t *testing.T) []byte { return hugeHeader(t, "sparse", 1<<30) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := t.TempDir()
			_, check := sentinel(t, base)
			root := filepath.Join(base, "rootfs")
			// An existing root is kept on failure, so the partial file must go on its own.
			if err := os.Mkdir(root, 0o755); err != nil {
				t.Fatal(err)
			}
			err := Apply(context.Background(), root, bytes.NewReader(tc.layer(t)), tc.opts)
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("want ErrLimit, got %v", err)
			}
			if tc.absent != "" {
				if _, err := os.Lstat(filepath.Join(root, tc.absent)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("partial %s left behind: %v", tc.absent, err)
				}
			}
			check()
		})
	}
}

// hugeHeader is a tar header declaring size bytes, with a few bytes of content only.
func hugeHeader(t *testing.T, name string, size int64) []byte {
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Size: size, Mode: 0o644, Format: tar.FormatPAX}); err != nil {
		t.Fatal(err)
	}
	tw.Write([]byte("abc"))
	return b.Bytes()
}

func TestMalformedTar(t *testing.T) {
	neg := layerTar(t, file("neg", "abcdef"))
	copy(neg[124:136], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}) // base-256 -2
	trunc := layerTar(t, file("trunc", strings.Repeat("x", 4000)))[:1024]
	for name, layer := range map[string][]byte{"negative size": neg, "truncated": trunc} {
		t.Run(name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			if err := Apply(context.Background(), root, bytes.NewReader(layer), Options{}); err == nil {
				t.Fatal("malformed layer applied without error")
			}
			if _, err := os.Lstat(root); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("root created by the failed apply left behind: %v", err)
			}
		})
	}
}
