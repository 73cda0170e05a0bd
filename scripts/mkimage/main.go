// Command mkimage writes an OCI image archive of a rootfs directory, for the quickstart: an image made
// offline that `knast image load` can take.
//
//	go run ./scripts/mkimage -name localhost/busybox:latest ROOTFS OUT.tar
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/knast/knast/internal/testutil"
)

func main() {
	name := flag.String("name", "localhost/busybox:latest", "image reference")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: mkimage [-name REF] ROOTFS OUT.tar")
		os.Exit(2)
	}
	f, err := os.Create(flag.Arg(1))
	if err == nil {
		err = testutil.WriteOCIArchive(f, flag.Arg(0), testutil.ImageConfig{
			Name: *name, Env: []string{"PATH=/bin"}, Cmd: []string{"sh"},
		})
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}
