package testutil

import (
	"fmt"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// MountsUnder returns the mount points at or under path (symlinks in path resolved), for leak checks.
func MountsUnder(path string) ([]string, error) {
	p, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("mounts under %s: %w", path, err)
	}
	if r, err := filepath.EvalSymlinks(p); err == nil {
		p = r
	}
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(p))
	if err != nil {
		return nil, fmt.Errorf("mounts under %s: %w", p, err)
	}
	out := make([]string, 0, len(infos))
	for _, m := range infos {
		out = append(out, m.Mountpoint)
	}
	return out, nil
}
