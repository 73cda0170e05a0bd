// Package testutil holds helpers shared by knast's tests and benchmarks: root checks, busybox-static
// rootfs and bundle construction, and leak snapshots (mounts, state entries, processes) that every
// integration test compares before and after it runs.
package testutil
