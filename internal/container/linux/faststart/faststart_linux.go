//go:build linux && cgo

package faststart

// #cgo CFLAGS: -Wall -Wextra -Werror -std=gnu11 -O2
import "C"
