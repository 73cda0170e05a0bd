// Package cni tests knast-cni (the knast binary through a symlink of that name) the way containerd
// drives CNI plugins: through libcni, in network namespaces the tests create, on networks with their own
// names, bridges, subnets (10.232.40-49.0/24) and data directories. Linux, root.
package cni
