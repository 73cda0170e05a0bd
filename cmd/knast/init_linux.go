//go:build linux

package main

import (
	"context"
	"runtime"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/container/linux"

	// The faststart constructor does a plain `knast start` before the Go runtime starts.
	"github.com/knast/knast/internal/container/linux/faststart"
	// The nsenter constructor joins namespaces before the Go runtime starts (knast init and exec).
	_ "github.com/knast/knast/internal/container/linux/nsenter"
)

func init() {
	// Keep the main goroutine on the main thread: the init sets per-thread state (capabilities, root, cwd)
	// and execs the container's process from it.
	runtime.LockOSThread()
}

func runInit(ctx context.Context) error { return linux.Init(ctx, container.RunHooks) }

// startAnswer is the exec-fifo answer the C start read before Go started, if it read one.
func startAnswer() ([]byte, bool, error) { return faststart.Answer() }
