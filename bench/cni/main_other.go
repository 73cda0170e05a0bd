//go:build !linux

package main

import (
	"fmt"
	"os"
	"runtime"
)

func main() {
	fmt.Fprintf(os.Stderr, "cni: the benchmark drives Linux CNI plugins; not available on %s\n", runtime.GOOS)
	os.Exit(1)
}
