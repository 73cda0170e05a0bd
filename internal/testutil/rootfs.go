package testutil

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// BusyboxPath is where Debian's busybox-static installs its binary.
const BusyboxPath = "/usr/bin/busybox"

// BusyboxRootfs populates dir as a minimal rootfs: bin/busybox copied from /usr/bin/busybox (busybox-static),
// a symlink per applet (`busybox --list`) in bin/, and dirs proc sys dev tmp etc root; etc/passwd and
// etc/group with root and a user 1000.
func BusyboxRootfs(dir string) error {
	for _, d := range []string{"bin", "proc", "sys", "dev", "tmp", "etc", "root", "home/user"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	// Sticky and world-writable like a real /tmp, so a non-root user can write there.
	if err := os.Chmod(filepath.Join(dir, "tmp"), os.ModeSticky|0o777); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	if err := os.Chown(filepath.Join(dir, "home/user"), 1000, 1000); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	bb := filepath.Join(dir, "bin", "busybox")
	if err := copyFile(BusyboxPath, bb, 0o755); err != nil {
		return fmt.Errorf("rootfs: %w", err)
	}
	var out bytes.Buffer
	cmd := exec.Command(BusyboxPath, "--list")
	cmd.Stdout = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("rootfs: %s --list: %w", BusyboxPath, err)
	}
	for _, applet := range strings.Fields(out.String()) {
		if applet == "busybox" || strings.ContainsRune(applet, '/') {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil {
			return fmt.Errorf("rootfs: applet: %w", err)
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n",
		"etc/group":  "root:x:0:\nuser:x:1000:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	return nil
}
