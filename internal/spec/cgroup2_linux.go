package spec

import "golang.org/x/sys/unix"

// cgroup2Unified reports whether /sys/fs/cgroup is a cgroup v2 mount (not v1 or hybrid).
func cgroup2Unified() bool {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return false
	}
	return st.Type == unix.CGROUP2_SUPER_MAGIC
}
