//go:build !linux

package build

import (
	"context"
	"errors"
	"fmt"
)

// Build needs overlayfs and the Linux runtime.
func Build(ctx context.Context, o Options) (*Result, error) {
	return nil, fmt.Errorf("knast build: %w", errors.ErrUnsupported)
}
