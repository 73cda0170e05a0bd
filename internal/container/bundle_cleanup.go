package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// bundleOverlayAnnotation marks a bundle whose rootfs is an overlay mount made by `knast bundle` or
// `run --image` (internal/image.OverlayAnnotation); its value names the bundle's directory of
// overlay upper and work dirs. The container owns that overlay: delete unmounts and removes it.
const bundleOverlayAnnotation = "org.knast.bundle.overlay"

// cleanupBundle unmounts an annotated bundle's overlay rootfs and removes its upper and work dirs.
// It is idempotent (a second delete, or one after a crash, finds nothing to do). With force a
// failure is logged and the delete goes on.
func (m *Manager) cleanupBundle(rec *store.Container, s *specs.Spec, force bool) error {
	err := cleanupBundleOverlay(rec, s)
	if err != nil && force {
		m.log.Warn("bundle overlay left behind", "id", rec.ID, "err", err)
		return nil
	}
	return err
}

func cleanupBundleOverlay(rec *store.Container, s *specs.Spec) error {
	ann := rec.Annotations
	if s != nil && s.Annotations != nil {
		ann = s.Annotations
	}
	name := ann[bundleOverlayAnnotation]
	if name == "" || rec.Bundle == "" {
		return nil
	}
	// The value comes from config.json: only a plain name inside the bundle is ever removed.
	if name == "." || name == ".." || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("annotation %s=%q: not a directory name in the bundle", bundleOverlayAnnotation, name)
	}
	if rec.Rootfs != "" {
		rootfs := rec.Rootfs
		if p, err := filepath.EvalSymlinks(rootfs); err == nil {
			rootfs = p // mountinfo lists resolved paths
		}
		if err := unmountOverlays(rootfs); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(filepath.Join(rec.Bundle, name)); err != nil {
		return fmt.Errorf("remove the bundle's overlay dirs: %w", err)
	}
	return nil
}

// unmountOverlays unmounts the overlays stacked at path (only overlays: another mount there is
// the user's); a busy one is detached.
func unmountOverlays(path string) error {
	for range 16 {
		ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(path))
		if err != nil {
			return fmt.Errorf("read mounts: %w", err)
		}
		if len(ms) == 0 || ms[len(ms)-1].FSType != "overlay" {
			return nil
		}
		err = unix.Unmount(path, 0)
		if errors.Is(err, unix.EBUSY) {
			err = detach(path)
		}
		if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount the rootfs overlay %s: %w", path, err)
		}
	}
	return fmt.Errorf("unmount the rootfs overlay %s: still mounted", path)
}
