// Package bsdnet encodes what knast's FreeBSD network driver hands the kernel, and decodes what it gets
// back, in plain Go: ioctl request numbers, struct ifreq / in_aliasreq / ifdrv / ifbreq, routing socket
// messages, pf table requests and the pf anchor the administrator loads once. It makes no system call, so
// every layout is tested on any OS against the FreeBSD headers; internal/network/driver_freebsd.go only
// passes these bytes to ioctl(2), write(2) and sysctl(3).
//
// Layouts are those of FreeBSD's 64-bit little-endian ABIs (amd64, arm64, riscv64): pointers, size_t and
// long are 8 bytes. Pointer fields (ifr_data, ifd_data, pfrio_buffer) are taken as addresses the caller
// keeps pinned and alive across the ioctl.
package bsdnet
