package main

import (
	"context"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/spec"
)

func runCmd() command {
	return command{summary: "create and start a container, wait for it and return its exit status", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		var o container.RunOptions
		createFlags(fs, &o.CreateOptions)
		fs.BoolVarP(&o.Detach, "detach", "d", false, "return once the container runs")
		var img imageRunOptions
		imageRunFlags(fs, &img)
		return func(ctx context.Context, a *app, args []string) error {
			if err := checkImageRunFlags(fs, &img); err != nil {
				return err
			}
			if img.image != "" {
				return a.runImage(ctx, args, o, img)
			}
			if err := needArgs("run", args, 1, "a container ID"); err != nil {
				return err
			}
			// knast owns the pty when the config wants one and nobody else receives it.
			if s, err := spec.Load(o.Bundle); err == nil && s.Process != nil && s.Process.Terminal {
				o.Terminal = true
			}
			code, err := a.manager().Run(ctx, args[0], o)
			if err != nil {
				return err
			}
			if code != 0 {
				return exitError{code}
			}
			return nil
		}
	}}
}
