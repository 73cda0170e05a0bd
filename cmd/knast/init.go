package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
)

// initCmd is the hidden verb the container's first process runs: a sealed copy of this binary, started by
// the runtime itself. It only returns on failure, which the parent has already been told about.
func initCmd() command {
	return command{summary: "container init (internal)", hidden: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := runInit(ctx); err != nil {
				return fmt.Errorf("init: %w", err)
			}
			return nil
		}
	}}
}
