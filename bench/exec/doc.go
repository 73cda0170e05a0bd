// Command exec measures `exec` latency of knast beside runc: one long-running busybox container per
// runtime (each runtime with its own --root), then `RUNTIME exec ID /bin/true` interleaved between the
// runtimes, once in a container without seccomp and once in one whose config holds containerd's default
// profile (knast reuses the program compiled at create; runc compiles the profile in every exec). It
// reports medians, p90s and the knast/runc ratios; it never asserts timings. Run it as root from the
// repository root: `go run ./bench/exec -knast bin/knast` (or `make bench`).
package main
