package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/build"
)

func buildCmd() command {
	return command{summary: "build an image from a Dockerfile (RUN steps run in knast containers)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		var o build.Options
		var buildArgs []string
		var output string
		fs.StringArrayVarP(&o.Tags, "tag", "t", nil, "name the image NAME[:TAG] (repeatable)")
		fs.StringVarP(&o.Dockerfile, "file", "f", "", "the Dockerfile (default: CONTEXT/Dockerfile)")
		fs.StringArrayVar(&buildArgs, "build-arg", nil, "set a build argument KEY=VALUE (KEY alone: from the environment)")
		fs.StringVar(&o.Target, "target", "", "build this stage (default: the last)")
		fs.BoolVar(&o.NoCache, "no-cache", false, "run every step, reusing nothing from the cache")
		fs.StringVar(&o.Platform, "platform", "", "os/arch[/variant] of the base images (default: the host's)")
		fs.StringVar(&o.Network, "network", build.NetworkHost, "network of RUN steps: host, none, or a knast network NAME (default: the default one)")
		tls := fs.Bool("tls-verify", true, "require HTTPS with verified certificates for pulls and --push")
		fs.BoolVar(&o.Push, "push", false, "push every --tag to its registry after the build")
		fs.StringVar(&output, "output", "", "also write the image out: type=oci,dest=PATH (an OCI archive)")
		fs.BoolVarP(&o.Quiet, "quiet", "q", false, "print only the image ID; a failing RUN's output is shown in the error")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("build", args, 1, "a build context directory"); err != nil {
				return err
			}
			o.ContextDir = args[0]
			o.Insecure = !*tls
			o.StorageDir, o.StateRoot, o.Log = a.storage, a.root, a.log
			if o.Push && len(o.Tags) == 0 {
				return errors.New("build: --push needs a --tag")
			}
			var err error
			if o.BuildArgs, err = parseBuildArgs(buildArgs); err != nil {
				return err
			}
			if output != "" {
				if o.OutputOCI, err = parseOutput(output); err != nil {
					return err
				}
			}
			if o.Dockerfile != "" {
				if o.Dockerfile, err = filepath.Abs(o.Dockerfile); err != nil {
					return fmt.Errorf("build: %w", err)
				}
			}
			if !o.Quiet {
				o.Out = a.stdout
			}
			if o.Network != build.NetworkHost && o.Network != build.NetworkNone {
				o.Networker = newNetworker(a)
				o.RunAnnotations = map[string]string{annNetwork: o.Network}
			}
			res, err := build.Build(ctx, o)
			if err != nil {
				return fmt.Errorf("build: %w", err)
			}
			if o.Quiet {
				fmt.Fprintln(a.stdout, res.ConfigDigest)
			}
			return nil
		}
	}}
}

// parseBuildArgs reads --build-arg KEY=VALUE (KEY alone takes the value from the environment).
func parseBuildArgs(list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, a := range list {
		k, v, ok := strings.Cut(a, "=")
		if k == "" {
			return nil, fmt.Errorf("build: --build-arg %q: want KEY=VALUE", a)
		}
		if !ok {
			var set bool
			if v, set = os.LookupEnv(k); !set {
				continue
			}
		}
		m[k] = v
	}
	return m, nil
}

// parseOutput reads --output type=oci,dest=PATH.
func parseOutput(s string) (string, error) {
	var typ, dest string
	for _, f := range strings.Split(s, ",") {
		k, v, _ := strings.Cut(f, "=")
		switch k {
		case "type":
			typ = v
		case "dest":
			dest = v
		default:
			return "", fmt.Errorf("build: --output: unknown key %q (want type=oci,dest=PATH)", k)
		}
	}
	if typ != "oci" {
		return "", fmt.Errorf("build: --output: type %q is not supported (want type=oci)", typ)
	}
	if dest == "" {
		return "", errors.New("build: --output: dest=PATH is missing")
	}
	return filepath.Abs(dest)
}
