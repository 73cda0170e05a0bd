//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestSealedExeOverlay(t *testing.T) {
	spawnTestRequireRoot(t)
	f, err := sealedExeOverlay()
	if err != nil {
		t.Skipf("overlayfs unavailable here, the memfd fallback is used: %v", err)
	}
	defer f.Close()
	var fs unix.Statfs_t
	if err := unix.Fstatfs(int(f.Fd()), &fs); err != nil {
		t.Fatal(err)
	}
	if fs.Type != unix.OVERLAYFS_SUPER_MAGIC {
		t.Errorf("sealed exe on fs %#x, want overlayfs", fs.Type)
	}
	path := fmt.Sprintf("/proc/self/fd/%d", f.Fd())
	// Not through the handle, not by reopening it, not even as root.
	for _, flag := range []int{os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC} {
		w, err := os.OpenFile(path, flag, 0)
		if err == nil {
			w.Close()
			t.Fatalf("sealed exe opened with flags %#x", flag)
		}
		if !errors.Is(err, unix.EROFS) {
			t.Errorf("open with flags %#x: %v, want EROFS", flag, err)
		}
	}
	// Content is the running binary's.
	self, _ := os.ReadFile("/proc/self/exe")
	got, err := os.ReadFile(path)
	if err != nil || len(got) != len(self) || string(got[:64]) != string(self[:64]) {
		t.Errorf("sealed exe content differs from /proc/self/exe (err %v, %d vs %d bytes)", err, len(got), len(self))
	}
}
