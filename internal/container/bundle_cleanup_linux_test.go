package container

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/image"
	"github.com/knast/knast/internal/store"
)

// TestCleanupBundle: delete's bundle cleanup unmounts an annotated overlay rootfs and removes the
// named dir, idempotently; it leaves unannotated bundles and other mounts alone and refuses names
// that leave the bundle.
func TestCleanupBundle(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounts need root")
	}
	if bundleOverlayAnnotation != image.OverlayAnnotation {
		t.Fatalf("annotation %q differs from internal/image's %q", bundleOverlayAnnotation, image.OverlayAnnotation)
	}
	tests := []struct {
		name       string
		annotation string
		mount      string // "overlay", "tmpfs" or ""
		wantErr    string
		wantGone   bool // the state dir is removed
		wantMount  bool // something stays mounted at the rootfs
	}{
		{name: "overlay", annotation: ".knast-overlay", mount: "overlay", wantGone: true},
		{name: "already unmounted", annotation: ".knast-overlay", wantGone: true},
		{name: "no annotation", mount: "overlay", wantMount: true},
		{name: "not ours", annotation: ".knast-overlay", mount: "tmpfs", wantGone: true, wantMount: true},
		{name: "escape", annotation: "../x", mount: "overlay", wantErr: "not a directory name", wantMount: true},
		{name: "dot dot", annotation: "..", wantErr: "not a directory name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle := t.TempDir()
			rootfs, state := filepath.Join(bundle, "rootfs"), filepath.Join(bundle, ".knast-overlay")
			lower, upper, work := filepath.Join(state, "lower"), filepath.Join(state, "upper"), filepath.Join(state, "work")
			for _, d := range []string{rootfs, lower, upper, work} {
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			switch tt.mount {
			case "overlay":
				if err := unix.Mount("overlay", rootfs, "overlay", 0, "lowerdir="+lower+",upperdir="+upper+",workdir="+work); err != nil {
					t.Skipf("no overlayfs: %v", err)
				}
			case "tmpfs":
				if err := unix.Mount("tmpfs", rootfs, "tmpfs", 0, ""); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { unix.Unmount(rootfs, unix.MNT_DETACH) })
			rec := &store.Container{ID: "cleanup-test", Bundle: bundle, Rootfs: rootfs}
			if tt.annotation != "" {
				rec.Annotations = map[string]string{bundleOverlayAnnotation: tt.annotation}
			}
			m := &Manager{log: slog.New(slog.DiscardHandler)}
			for i := range 2 { // idempotent
				err := m.cleanupBundle(rec, nil, false)
				if tt.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
						t.Fatalf("call %d: err %v, want %q", i, err, tt.wantErr)
					}
					if err := m.cleanupBundle(rec, nil, true); err != nil {
						t.Fatalf("force: %v", err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
			}
			if _, err := os.Stat(state); os.IsNotExist(err) != tt.wantGone {
				t.Errorf("state dir: %v, want gone %v", err, tt.wantGone)
			}
			if mounted, err := mountinfo.Mounted(rootfs); err != nil || mounted != tt.wantMount {
				t.Errorf("rootfs mounted %v (%v), want %v", mounted, err, tt.wantMount)
			}
		})
	}
}
