//go:build !cgo || !linux

package seccomp

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Prepare compiles a profile; it needs libseccomp, that is Linux and cgo.
func Prepare(s *specs.LinuxSeccomp) (*Filter, error) {
	return nil, fmt.Errorf("linux.seccomp: %w (built without libseccomp)", errors.ErrUnsupported)
}

// Supported reports nothing: without libseccomp no profile can be compiled.
func Supported() (actions, archs, flags, operators []string) { return nil, nil, nil, nil }

// Version is empty: built without libseccomp.
func Version() string { return "" }
