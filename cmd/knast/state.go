package main

import (
	"context"
	"encoding/json"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
)

func stateCmd() command {
	return command{summary: "print the state of a container (JSON)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("state", args, 1, "a container ID"); err != nil {
				return err
			}
			st, err := a.manager().State(ctx, args[0])
			if err != nil {
				return err
			}
			return printJSON(a, st)
		}
	}}
}

func listCmd() command {
	return command{summary: "list containers", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		format := fs.StringP("format", "f", "table", "output format: table or json")
		quiet := fs.BoolP("quiet", "q", false, "print only the IDs")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("list", args, 0, "no arguments"); err != nil {
				return err
			}
			if *format != "table" && *format != "json" {
				return fmt.Errorf("list: --format: %q is not one of table, json", *format)
			}
			states, err := a.manager().List(ctx)
			if err != nil {
				return err
			}
			switch {
			case *quiet:
				for _, s := range states {
					fmt.Fprintln(a.stdout, s.ID)
				}
			case *format == "json":
				if states == nil {
					states = []container.State{}
				}
				return printJSON(a, states)
			default:
				w := tabwriter.NewWriter(a.stdout, 12, 1, 3, ' ', 0)
				fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
				for _, s := range states {
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
				}
				return w.Flush()
			}
			return nil
		}
	}}
}

func featuresCmd() command {
	return command{summary: "print the features this runtime supports (JSON)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("features", args, 0, "no arguments"); err != nil {
				return err
			}
			return printJSON(a, a.manager().Features())
		}
	}}
}

func printJSON(a *app, v any) error {
	enc := json.NewEncoder(a.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
