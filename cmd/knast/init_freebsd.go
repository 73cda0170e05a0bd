//go:build freebsd

package main

import (
	"context"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/container/freebsd"
)

func runInit(ctx context.Context) error { return freebsd.Init(ctx, container.RunHooks) }

// startAnswer: FreeBSD has no C start; Go does every start.
func startAnswer() ([]byte, bool, error) { return nil, false, nil }
