//go:build linux && cgo

package nsenter

// The constructor lives in nsenter_linux.c; importing "C" makes the go tool
// compile and link it. Nothing here is called from Go.

// #cgo CFLAGS: -Wall -Wextra -Werror -std=gnu11 -O2
import "C"
