//go:build !linux

package image

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Overlay rootfs mounts are Linux's; elsewhere bundles copy the layers.

func overlaySupported() error {
	return fmt.Errorf("%w: %w", ErrNoOverlay, errors.ErrUnsupported)
}

func mountRootfs(string, string, []string) error { return overlaySupported() }

func unpackOnOverlay(context.Context, string, io.Reader, string, []string) error {
	return overlaySupported()
}

func unmountOverlay(string) error { return nil }

func isOverlayMount(string) bool { return false }
