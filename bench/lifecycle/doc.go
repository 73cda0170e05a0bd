// Command lifecycle measures the container lifecycle (create → start → wait for exit → delete) of knast
// beside runc and crun on the same busybox bundle, interleaving the runtimes round by round, and the
// memory a container holds while it waits in "created". It reports medians, p90s and ratios; it never
// asserts timings. RSS and PSS of the waiting init include the clean pages of the runtime's binary, which
// every process running it shares and which depend on what the page cache holds; "anon" is what the init
// holds on its own. Run it as root from the repository root: `go run ./bench/lifecycle` (or `make bench`).
package main
