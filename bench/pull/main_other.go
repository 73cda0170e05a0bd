//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "pull: the benchmark needs Linux (overlayfs, docker-registry); not available on %s\n", runtime.GOOS)
	os.Exit(1)
}
