//go:build !linux && !freebsd

package main

import (
	"context"
	"errors"
	"fmt"
	"runtime"
)

func runInit(context.Context) error {
	return fmt.Errorf("init on %s: %w", runtime.GOOS, errors.ErrUnsupported)
}

func startAnswer() ([]byte, bool, error) { return nil, false, nil }
