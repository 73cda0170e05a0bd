package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
)

// createFlags registers the flags create and run share.
func createFlags(fs *pflag.FlagSet, o *container.CreateOptions) {
	fs.StringVarP(&o.Bundle, "bundle", "b", ".", "path to the bundle directory")
	fs.StringVar(&o.PidFile, "pid-file", "", "write the container init's pid to this file")
	fs.StringVar(&o.ConsoleSocket, "console-socket", "", "unix socket that receives the pty master (process.terminal)")
	fs.BoolVar(&o.NoPivot, "no-pivot", false, "use MS_MOVE and chroot instead of pivot_root")
	fs.BoolVar(&o.NoNewKeyring, "no-new-keyring", false, "keep the caller's session keyring")
	fs.IntVar(&o.PreserveFds, "preserve-fds", 0, "pass this many fds after stdio (3, 4, ...) to the container")
}

func createCmd() command {
	return command{summary: "create a container (its process waits for start)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		var o container.CreateOptions
		createFlags(fs, &o)
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("create", args, 1, "a container ID"); err != nil {
				return err
			}
			return a.manager().Create(ctx, args[0], o)
		}
	}}
}

func startCmd() command {
	return command{summary: "start the process of a created container", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("start", args, 1, "a container ID"); err != nil {
				return err
			}
			// The C start may have done the fifo handshake before Go started (package faststart).
			answer, ok, err := startAnswer()
			if err != nil {
				return err
			}
			if ok {
				return a.manager().FinishStart(ctx, args[0], answer)
			}
			return a.manager().Start(ctx, args[0])
		}
	}}
}
