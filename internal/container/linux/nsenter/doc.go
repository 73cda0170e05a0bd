// Package nsenter joins and creates namespaces before the Go runtime starts.
//
// Go cannot setns(2) into mount or user namespaces once the runtime is
// multi-threaded, so on Linux (with cgo) this package links a small C
// constructor into the binary that runs before the runtime. It does nothing
// unless $_KNAST_NSENTER is set, which only linux.Spawn does for the
// re-executed knast child. Import it for its side effect from package main:
//
//	import _ "github.com/knast/knast/internal/container/linux/nsenter"
//
// The environment it reads and the sync socket wire format are described in
// nsenter_linux.c; the Go side of the protocol is linux.Spawn. On other
// systems, and on Linux without cgo, the package is empty.
package nsenter
