package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
)

func execCmd() command {
	return command{summary: "run a new process inside a container", noInterspersed: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		var o container.ExecOptions
		var gids []string
		fs.StringVarP(&o.ProcessFile, "process", "p", "", "path to a process.json (runtime-spec process)")
		fs.BoolVarP(&o.Tty, "tty", "t", false, "allocate a pseudo-TTY")
		fs.StringVar(&o.ConsoleSocket, "console-socket", "", "unix socket that receives the pty master")
		fs.BoolVarP(&o.Detach, "detach", "d", false, "return once the process runs")
		fs.StringVar(&o.PidFile, "pid-file", "", "write the process's pid to this file")
		fs.StringVar(&o.Cwd, "cwd", "", "working directory in the container")
		fs.StringArrayVarP(&o.Env, "env", "e", nil, "set an environment variable (KEY=VALUE)")
		fs.StringVarP(&o.User, "user", "u", "", "UID[:GID] to run as")
		fs.StringArrayVarP(&gids, "additional-gids", "g", nil, "additional group IDs")
		fs.StringArrayVarP(&o.Caps, "cap", "c", nil, "add a capability")
		fs.BoolVar(&o.NoNewPrivs, "no-new-privs", false, "set no_new_privs")
		fs.StringVar(&o.AppArmor, "apparmor", "", "AppArmor profile")
		fs.StringVar(&o.ProcessLabel, "process-label", "", "SELinux process label")
		fs.IntVar(&o.PreserveFds, "preserve-fds", 0, "pass this many fds after stdio to the process")
		fs.BoolVar(&o.IgnorePaused, "ignore-paused", false, "exec even if the container is paused")
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("exec: expects a container ID and a command (or --process)")
			}
			for _, g := range gids {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return fmt.Errorf("exec: --additional-gids %q: not a number", g)
				}
				o.AdditionalGid = append(o.AdditionalGid, uint32(n))
			}
			o.Args = args[1:]
			code, err := a.manager().Exec(ctx, args[0], o)
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
