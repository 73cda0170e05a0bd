//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "ctr: the benchmark drives containerd and Linux runtimes; not available on %s\n", runtime.GOOS)
	os.Exit(1)
}
