// Package faststart does `knast start ID` before the Go runtime starts, when the start is nothing but the
// exec-fifo handshake.
//
// A start opens the container's exec fifo, which releases the waiting init, and reads its answer. Starting
// the Go runtime of the knast binary costs several times that, so on Linux (with cgo) this package links a
// C constructor into the binary that does the handshake and exits when it can: the command line is plain,
// the state dir holds the marker create writes for a created container without poststart hooks, and the
// init answers with a plain success. In every other case it returns before touching the fifo and the Go
// command does the whole start. When it has read an answer that is not a success it hands the answer over
// (see Answer) so that Go reports it as it reports its own handshake. Import it for its side effect from
// package main; the rules are in faststart_linux.c.
package faststart
