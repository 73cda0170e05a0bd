// Command cni measures attach + detach latency of knast-cni beside the CNI reference `bridge` plugin
// (with host-local IPAM, from Debian's containernetworking-plugins in /usr/lib/cni), both driven through
// the same libcni harness containerd uses: ADD then DEL of one container's eth0 in a network namespace,
// the two plugins interleaved round by round (which goes first alternates). Both masquerade the subnet
// and make the host end's bridge the gateway. It reports medians, p90s and the knast/bridge ratios; it
// never asserts timings. Run it as root from the repository root:
// `go run ./bench/cni -knast bin/knast` (or `make bench`).
package main
