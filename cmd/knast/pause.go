package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
)

func pauseCmd() command {
	return command{summary: "freeze every process of a container", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("pause", args, 1, "a container ID"); err != nil {
				return err
			}
			return a.manager().Pause(ctx, args[0])
		}
	}}
}

func resumeCmd() command {
	return command{summary: "thaw a paused container", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("resume", args, 1, "a container ID"); err != nil {
				return err
			}
			return a.manager().Resume(ctx, args[0])
		}
	}}
}

// psCmd lists a container's processes: JSON pids, or the host's ps output (with the given ps options)
// narrowed to the container's processes, as runc does.
func psCmd() command {
	return command{summary: "list the processes of a container", noInterspersed: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		format := fs.StringP("format", "f", "table", "output format: table or json")
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) < 1 {
				return fmt.Errorf("ps: expects a container ID and optional ps options")
			}
			pids, err := a.manager().Processes(ctx, args[0])
			if err != nil {
				return err
			}
			switch *format {
			case "json":
				if pids == nil {
					pids = []int{}
				}
				return printJSON(a, pids)
			case "table":
				return psTable(ctx, a, pids, args[1:])
			default:
				return fmt.Errorf("ps: --format: %q is not one of table, json", *format)
			}
		}
	}}
}

func psTable(ctx context.Context, a *app, pids []int, psArgs []string) error {
	if len(psArgs) == 0 {
		psArgs = []string{"-ef"}
	}
	out, err := exec.CommandContext(ctx, "ps", psArgs...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(psArgs, " "), err)
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	col := slices.Index(strings.Fields(lines[0]), "PID")
	if col < 0 {
		return fmt.Errorf("ps %s: output has no PID column", strings.Join(psArgs, " "))
	}
	fmt.Fprintln(a.stdout, lines[0])
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) <= col {
			continue
		}
		if pid, err := strconv.Atoi(f[col]); err == nil && slices.Contains(pids, pid) {
			fmt.Fprintln(a.stdout, l)
		}
	}
	return nil
}

func eventsCmd() command {
	return command{summary: "print container events: stats and OOM kills (JSON lines)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		stats := fs.Bool("stats", false, "print stats once and exit")
		interval := fs.Duration("interval", 5*time.Second, "how often to print stats")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("events", args, 1, "a container ID"); err != nil {
				return err
			}
			if *interval <= 0 {
				return fmt.Errorf("events: --interval must be positive")
			}
			enc := jsonLines(a)
			return a.manager().Events(ctx, args[0], *interval, *stats, func(e container.Event) error { return enc(e) })
		}
	}}
}

func jsonLines(a *app) func(v any) error {
	return func(v any) error {
		b, err := jsonMarshal(v)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		if f, ok := a.stdout.(*os.File); ok {
			f.Sync()
		}
		return err
	}
}
