package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/fuzz/FuzzApply from fuzzSeeds")

// fuzzSeeds are hostile layers with relative escapes, so they aim at base/outside wherever the
// fuzzer's temp dir is.
func fuzzSeeds(t testing.TB) map[string][]byte {
	dev := ent{Header: tar.Header{Typeflag: tar.TypeChar, Name: "l/dev", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	return map[string][]byte{
		"symlink-escape":  layerTar(t, symlink("l", "../outside"), file("l/keep", "pwned"), dir("l/sub/x"), dev),
		"symlink-chain":   layerTar(t, symlink("a", "b/../../outside"), symlink("b", "."), file("a/passwd", "x")),
		"dotdot":          layerTar(t, file("../outside/keep", "x"), file("ok", "y")),
		"hardlink-escape": layerTar(t, symlink("s", "../outside"), hardlink("h", "s/passwd"), hardlink("g", "../outside/passwd")),
		"whiteouts":       layerTar(t, symlink("w", "../outside"), whiteout("w/keep"), file("w/.wh..wh..opq", ""), whiteout("w/sub")),
		"replace":         layerTar(t, dir("d"), file("d/f", "1"), file("d", "2"), symlink("d", "../outside"), dir("d"), file("d/keep", "3")),
		"gzip":            gzipped(t, layerTar(t, symlink("z", "../../outside"), file("z/keep", "x"))),
		"zstd":            zstded(t, layerTar(t, symlink("z", "/../outside"), file("z/keep", "x"))),
	}
}

func TestFuzzCorpus(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzApply")
	seeds := fuzzSeeds(t)
	if *update {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range seeds {
			if err := os.WriteFile(filepath.Join(dir, name), fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name := range seeds {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("seed %s missing from %s (run go test -run TestFuzzCorpus -update): %v", name, dir, err)
		}
	}
}

// FuzzApply: any byte stream applied into base/rootfs leaves base/outside untouched, creates
// nothing else in base, and never panics.
func FuzzApply(f *testing.F) {
	for _, b := range fuzzSeeds(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, layer []byte) {
		base := t.TempDir()
		_, check := sentinel(t, base)
		root := filepath.Join(base, "rootfs")
		// Errors are expected for most inputs; only escapes and panics are failures.
		_ = Apply(context.Background(), root, bytes.NewReader(layer), Options{MaxBytes: 4 << 20, MaxEntries: 512})
		check()
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if got := fmt.Sprint(names); got != "[outside rootfs]" && got != "[outside]" {
			t.Errorf("base holds %v, want only outside and (unless the layer failed) rootfs", names)
		}
	})
}
