//go:build linux

package main

import (
	"context"
	"runtime"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/container/linux"
	// The nsenter constructor joins namespaces before the Go runtime starts (knast init and exec).
	_ "github.com/knast/knast/internal/container/linux/nsenter"
)

func init() {
	// Keep the main goroutine on the main thread: the init sets per-thread state (capabilities, root, cwd)
	// and execs the container's process from it.
	runtime.LockOSThread()
}

func runInit(ctx context.Context) error { return linux.Init(ctx, container.RunHooks) }
