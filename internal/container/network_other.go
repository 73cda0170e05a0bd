//go:build !linux && !freebsd

package container

import (
	"errors"
	"fmt"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func networkNamespace(string, *specs.Spec, int) (string, error) {
	return "", fmt.Errorf("networks on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}
