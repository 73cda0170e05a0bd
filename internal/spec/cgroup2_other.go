//go:build !linux

package spec

// cgroup2Unified is false off Linux: there is no cgroup namespace to add.
func cgroup2Unified() bool { return false }
