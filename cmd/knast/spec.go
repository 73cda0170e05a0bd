package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"
)

func specVersion() string { return specs.Version }

func specCmd() command {
	return command{summary: "write an example config.json into the bundle", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		bundle := fs.StringP("bundle", "b", ".", "bundle directory to write config.json into")
		rootless := fs.Bool("rootless", false, "a config for a container run by an unprivileged user")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("spec", args, 0, "no arguments"); err != nil {
				return err
			}
			path := filepath.Join(*bundle, "config.json")
			if _, err := os.Stat(path); err == nil {
				return fmt.Errorf("spec: %s exists: remove it first", path)
			} else if !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("spec: %w", err)
			}
			ex, err := exampleSpec(*rootless)
			if err != nil {
				return fmt.Errorf("spec: %w", err)
			}
			b, err := json.MarshalIndent(ex, "", "\t")
			if err != nil {
				return err
			}
			return os.WriteFile(path, append(b, '\n'), 0o644)
		}
	}}
}
