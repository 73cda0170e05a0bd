//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "build: the benchmark drives knast build and buildah on Linux; not available on %s\n", runtime.GOOS)
	os.Exit(1)
}
