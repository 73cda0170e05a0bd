// Package kube is the Kubernetes node path's integration test: Debian's containerd with its CRI
// plugin on a private socket, root and state, the "knast" runtime handler from deploy/containerd,
// pods and containers driven with crictl, pod networks through knast-cni, images from a local
// docker-registry. It needs root; the tests are Linux-only.
package kube
