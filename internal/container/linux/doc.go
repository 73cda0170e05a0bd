// Package linux is knast's Linux backend: it spawns the container's init through a sealed self-exec
// and the nsenter constructor, and on the init side builds the container's world: the root filesystem
// (mounts resolved inside the rootfs, devices, pivot_root, masked and read-only paths), sysctls,
// rlimits, capabilities and the user the process runs as.
package linux
