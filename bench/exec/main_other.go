//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "exec: the benchmark drives Linux runtimes (runc); not available on %s\n", runtime.GOOS)
	os.Exit(1)
}
