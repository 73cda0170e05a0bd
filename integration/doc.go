// Package integration drives the built knast binary against the real kernel (Linux, as root): the
// runc-compatible CLI contract, namespaces, mounts, process attributes, hooks, consoles and the
// security properties of the runtime core. Every test proves it left no mount, state entry or
// process behind.
package integration
