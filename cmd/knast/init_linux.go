//go:build linux

package main

import (
	"context"
	"os"
	"runtime"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/container/linux"

	// The faststart constructor does a plain `knast start` before the Go runtime starts.
	"github.com/knast/knast/internal/container/linux/faststart"
	// The nsenter constructor joins namespaces before the Go runtime starts (knast init and exec).
	_ "github.com/knast/knast/internal/container/linux/nsenter"
)

func init() {
	// Keep the init's main goroutine on the main thread: it sets per-thread state (capabilities, root,
	// cwd, LSM labels through /proc/self) and execs the container's process from it. Only the init: a
	// locked main thread costs every other knast process a template thread and a handoff for each
	// thread the runtime starts.
	if len(os.Args) > 1 && os.Args[1] == "init" {
		runtime.LockOSThread()
	}
}

func runInit(ctx context.Context) error { return linux.Init(ctx, container.RunHooks) }

// startAnswer is the exec-fifo answer the C start read before Go started, if it read one.
func startAnswer() ([]byte, bool, error) { return faststart.Answer() }
