// Command lifecycle measures the container lifecycle (create → start → wait for exit → delete) of knast
// beside runc and crun on the same busybox bundle, interleaving the runtimes round by round, and the
// memory a container holds while it waits in "created". It reports medians, p90s and ratios; it never
// asserts timings. Run it as root from the repository root: `go run ./bench/lifecycle` (or `make bench`).
package main
