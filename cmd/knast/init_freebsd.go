//go:build freebsd

package main

import (
	"context"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/container/freebsd"
)

func runInit(ctx context.Context) error { return freebsd.Init(ctx, container.RunHooks) }
