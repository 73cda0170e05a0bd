//go:build !freebsd

package main

import (
	"errors"
	"fmt"
	"os"
	"runtime"
)

func serveJailSockets(int, *os.File) error {
	return fmt.Errorf("vnet-sockets: jails on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
