package build

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// A build holds an exclusive flock on STORAGE/build/tmp/ID.lock for its lifetime; the kernel drops it
// when the process dies, however it dies. The next build finds the lock free and sweeps what the dead
// one left: its RUN containers, the stage overlays mounted under tmp/ID, and tmp/ID itself.

// lockBuild creates and locks the build's lock file; the returned file must stay open until the end.
func lockBuild(tmpRoot, id string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(tmpRoot, id+".lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("build lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// sweepDeadBuilds removes what builds killed midway left under tmpRoot. A build still running holds
// its lock and is left alone.
func (b *builder) sweepDeadBuilds(ctx context.Context, tmpRoot string) {
	ents, err := os.ReadDir(tmpRoot)
	if err != nil {
		return
	}
	for _, e := range ents {
		id, ok := strings.CutSuffix(e.Name(), ".lock")
		if ok || !e.IsDir() || id == b.id {
			continue
		}
		lock, err := os.OpenFile(filepath.Join(tmpRoot, id+".lock"), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			continue
		}
		if unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
			lock.Close() // alive
			continue
		}
		if err := b.sweepBuild(ctx, filepath.Join(tmpRoot, id), id); err != nil {
			b.log.Warn("sweep a killed build's leftovers", "build", id, "err", err)
		} else {
			os.Remove(lock.Name())
		}
		lock.Close()
	}
}

func (b *builder) sweepBuild(ctx context.Context, dir, id string) error {
	// Its RUN containers first: their rootfs are the overlays below.
	states, err := b.mgr.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, st := range states {
		if strings.HasPrefix(st.ID, "knast-build-"+id+"-") {
			if err := b.mgr.Delete(ctx, st.ID, true); err != nil {
				errs = append(errs, err)
			}
		}
	}
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return fmt.Errorf("read mounts: %w", err)
	}
	for i := len(mounts) - 1; i >= 0; i-- { // deepest (latest) first
		if err := unmount(mounts[i].Mountpoint); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // never remove through a mount
	}
	return os.RemoveAll(dir)
}
