package build

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Every build holds STORAGE/build/cache.lock shared while it runs; PruneCache takes it exclusively, so
// the cache never goes while a build reads it, stacks its layer directories or adds to it.
const cacheLockName = "cache.lock"

// lockCache opens dir's cache lock and flocks it (how: unix.LOCK_SH or LOCK_EX, maybe with LOCK_NB).
// The lock lasts until the returned file is closed, or the process dies.
func lockCache(dir string, how int) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, cacheLockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build cache lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), how); err != nil {
		f.Close()
		return nil, fmt.Errorf("build cache lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// CacheReport says what PruneCache removed.
type CacheReport struct {
	Steps int   `json:"steps"` // cached steps
	Dirs  int   `json:"dirs"`  // their layer directories and unpacked base images
	Bytes int64 `json:"bytes"` // the size of the files in those directories
}

// ErrBuildRunning is PruneCache's answer while a build holds the cache.
var ErrBuildRunning = errors.New("a build is running: prune the build cache once it has ended")

// PruneCache removes the build cache of the storage directory: every cached step, the layer
// directories of the steps and the base images unpacked for builds. The next build runs every step.
// It changes nothing while a build runs (ErrBuildRunning). Killed midway it leaves a smaller cache:
// the steps' records go first, so no step is reused without its layer, and each directory goes to
// the trash whole before it is removed, so no build takes half of one for all of it.
func PruneCache(ctx context.Context, storageDir string) (CacheReport, error) {
	var rep CacheReport
	dir := filepath.Join(storageDir, "build")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return rep, nil
	}
	lock, err := lockCache(dir, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return rep, fmt.Errorf("build cache %s: %w", dir, ErrBuildRunning)
	}
	if err != nil {
		return rep, err
	}
	defer lock.Close()
	steps, err := os.ReadDir(filepath.Join(dir, "cache"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("build cache: %w", err)
	}
	for _, e := range steps {
		if strings.HasSuffix(e.Name(), ".json") {
			rep.Steps++
		}
	}
	if err := os.RemoveAll(filepath.Join(dir, "cache")); err != nil {
		return rep, fmt.Errorf("build cache: %w", err)
	}
	for _, sub := range []string{"layers", "base"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return rep, fmt.Errorf("build cache: %w", err)
		}
		for _, e := range ents {
			if err := ctx.Err(); err != nil {
				return rep, err
			}
			if err := (stepCache{dir: dir}).discard(filepath.Join(dir, sub, e.Name())); err != nil {
				return rep, err
			}
			rep.Dirs++
		}
	}
	trash := filepath.Join(dir, "trash")
	ents, err := os.ReadDir(trash)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return rep, fmt.Errorf("build cache: %w", err)
	}
	for _, e := range ents {
		p := filepath.Join(trash, e.Name())
		rep.Bytes += treeSize(p)
		if err := os.RemoveAll(p); err != nil {
			return rep, fmt.Errorf("build cache: %w", err)
		}
	}
	return rep, nil
}

// treeSize adds up the sizes of the regular files below p.
func treeSize(p string) int64 {
	var n int64
	filepath.WalkDir(p, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
