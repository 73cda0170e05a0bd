package main

import (
	"context"
	"fmt"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container"
)

func killCmd() command {
	return command{summary: "send a signal (default TERM) to a container", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		all := fs.BoolP("all", "a", false, "signal every process of the container")
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("kill: expects a container ID and an optional signal, got %d argument(s)", len(args))
			}
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = container.ParseSignal(args[1]); err != nil {
					return err
				}
			}
			return a.manager().Kill(ctx, args[0], sig, *all)
		}
	}}
}

func deleteCmd() command {
	return command{summary: "delete a container (kills a created one; --force kills a running one)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		force := fs.BoolP("force", "f", false, "kill the container if it runs; no error if it does not exist")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("delete", args, 1, "a container ID"); err != nil {
				return err
			}
			return a.manager().Delete(ctx, args[0], *force)
		}
	}}
}
