// Command ctr measures knast under containerd beside runc: it starts a private containerd (its own
// config, root, state and socket under a temp dir; no CRI plugin), imports a busybox-static image built
// here, then times `ctr run --rm --runc-binary RUNTIME IMAGE ID /bin/true` for knast and runc,
// interleaved round by round. It reports medians, p90s and the knast/runc ratio; it never asserts
// timings. At the end it stops containerd and fails when a process, mount or cgroup of the run is
// left. Run it as root from the repository root: `go run ./bench/ctr -knast bin/knast` (or `make bench`).
package main
