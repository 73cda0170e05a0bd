package build

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPruneCache(t *testing.T) {
	storage := t.TempDir()
	dir := filepath.Join(storage, "build")
	files := map[string]string{
		"cache/aaa.json":       `{"empty":true}`,
		"cache/bbb.json":       `{}`,
		"cache/bbb.json.new":   `{}`, // a record being written: not a step
		"layers/bbb/etc/file":  "12345",
		"base/ccc/bin/sh":      "1234567890",
		"trash/layer-1/dir/x":  "123",
		"tmp/other-build/keep": "left alone",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte(c), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	// A running build holds the cache shared: nothing changes.
	held, err := lockCache(dir, unix.LOCK_SH)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := PruneCache(context.Background(), storage); !errors.Is(err, ErrBuildRunning) {
		t.Fatalf("prune while a build holds the cache: %v, want ErrBuildRunning", err)
	}
	for p := range files {
		if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
			t.Errorf("the refused prune removed %s", p)
		}
	}
	held.Close()

	rep, err := PruneCache(context.Background(), storage)
	if err != nil {
		t.Fatal(err)
	}
	if want := (CacheReport{Steps: 2, Dirs: 2, Bytes: 5 + 10 + 3}); rep != want {
		t.Errorf("report %+v, want %+v", rep, want)
	}
	for _, sub := range []string{"cache", "layers/bbb", "base/ccc", "trash/layer-1"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is still there (%v)", sub, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tmp/other-build/keep")); err != nil {
		t.Errorf("prune touched a build's tmp dir: %v", err)
	}

	// A storage that never built anything.
	if rep, err := PruneCache(context.Background(), t.TempDir()); err != nil || rep != (CacheReport{}) {
		t.Errorf("empty storage: %+v, %v", rep, err)
	}
}
