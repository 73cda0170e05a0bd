package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/knast/knast/internal/build"
	"github.com/knast/knast/internal/image"
)

func (a *app) images() (*image.Store, error) { return image.Open(a.storage, a.log) }

// imageCmds are the subcommands of `knast image`.
func imageCmds() map[string]command {
	return map[string]command{
		"ls":      imagesCmd(),
		"list":    imagesCmd(),
		"pull":    pullCmd(),
		"push":    pushCmd(),
		"inspect": imageInspectCmd(),
		"rm":      imageRmCmd(),
		"tag":     imageTagCmd(),
		"save":    imageSaveCmd(),
		"load":    imageLoadCmd(),
		"prune":   imagePruneCmd(),
	}
}

// imageCmd dispatches `knast image SUBCOMMAND [flags] [args]`.
func imageCmd() command {
	return command{summary: "manage images: ls, pull, push, inspect, rm, tag, save, load, prune", noInterspersed: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			subs := imageCmds()
			if len(args) == 0 {
				names := make([]string, 0, len(subs))
				for n := range subs {
					names = append(names, n)
				}
				sort.Strings(names)
				return fmt.Errorf("image: expects a subcommand: %s", strings.Join(names, ", "))
			}
			sub, ok := subs[args[0]]
			if !ok {
				return fmt.Errorf("image: unknown subcommand %q", args[0])
			}
			sfs := pflag.NewFlagSet("image "+args[0], pflag.ContinueOnError)
			sfs.SetOutput(a.stderr)
			run := sub.flags(sfs)
			if err := sfs.Parse(args[1:]); err != nil {
				if errors.Is(err, pflag.ErrHelp) {
					return nil
				}
				return fmt.Errorf("image %s: %w", args[0], err)
			}
			return run(ctx, a, sfs.Args())
		}
	}}
}

// tlsVerify adds --tls-verify; the returned func says whether to allow plain HTTP / unverified TLS.
func tlsVerify(fs *pflag.FlagSet) func() bool {
	v := fs.Bool("tls-verify", true, "require HTTPS and verify certificates (false allows plain HTTP and self-signed registries)")
	return func() bool { return !*v }
}

func pullCmd() command {
	return command{summary: "pull an image from a registry into --storage", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		platform := fs.String("platform", "", "os/arch[/variant] to pull from a multi-platform image (default: the host's)")
		insecure := tlsVerify(fs)
		quiet := fs.BoolP("quiet", "q", false, "no progress output")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("pull", args, 1, "an image reference"); err != nil {
				return err
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			// A plain pull leaves unpacking to the first bundle of the image.
			o := image.PullOptions{Platform: *platform, Insecure: insecure(), NoUnpack: true}
			if !*quiet {
				o.Progress = a.stderr
			}
			img, err := st.Pull(ctx, args[0], o)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, img.Digest)
			return nil
		}
	}}
}

func pushCmd() command {
	return command{summary: "push an image of --storage to a registry", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		insecure := tlsVerify(fs)
		quiet := fs.BoolP("quiet", "q", false, "no progress output")
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("push: expects an image and an optional destination, got %d argument(s)", len(args))
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			dest := ""
			if len(args) == 2 {
				dest = args[1]
			}
			o := image.PushOptions{Insecure: insecure()}
			if !*quiet {
				o.Progress = a.stderr
			}
			d, err := st.Push(ctx, args[0], dest, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, d)
			return nil
		}
	}}
}

func imagesCmd() command {
	return command{summary: "list the images of --storage", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		format := fs.StringP("format", "f", "table", "output format: table or json")
		quiet := fs.BoolP("quiet", "q", false, "print only the digests")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("images", args, 0, "no arguments"); err != nil {
				return err
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			list, err := st.List(ctx)
			if err != nil {
				return err
			}
			if *quiet {
				seen := map[string]bool{}
				for _, im := range list {
					if !seen[im.Digest] {
						seen[im.Digest] = true
						fmt.Fprintln(a.stdout, im.Digest)
					}
				}
				return nil
			}
			switch *format {
			case "json":
				return printJSON(a, list)
			case "table":
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "REPOSITORY\tTAG\tDIGEST\tSIZE\tCREATED")
				for _, im := range list {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", im.Repository, im.Tag, shortID(im.Digest), humanBytes(im.Size), ago(im.Created))
				}
				return tw.Flush()
			default:
				return fmt.Errorf("images: --format: %q is not one of table, json", *format)
			}
		}
	}}
}

func shortID(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func humanBytes(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1fMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}

func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case t.IsZero():
		return ""
	case d < time.Minute:
		return "less than a minute ago"
	case d < time.Hour:
		return fmt.Sprintf("%d minutes ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d hours ago", int(d.Hours()))
	case d < 60*24*time.Hour:
		return fmt.Sprintf("%d days ago", int(d.Hours()/24))
	case d < 2*365*24*time.Hour:
		return fmt.Sprintf("%d months ago", int(d.Hours()/24/30))
	}
	return fmt.Sprintf("%d years ago", int(d.Hours()/24/365))
}

func imageInspectCmd() command {
	return command{summary: "print an image's manifest and config", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		platform := fs.String("platform", "", "the platform's manifest (default: the one pulled)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("image inspect", args, 1, "an image"); err != nil {
				return err
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			img, err := st.Resolve(ctx, args[0], *platform)
			if err != nil {
				return err
			}
			return printJSON(a, struct {
				Name           string          `json:"name"`
				Digest         string          `json:"digest"`
				ManifestDigest string          `json:"manifestDigest"`
				Platform       string          `json:"platform"`
				Manifest       json.RawMessage `json:"manifest"`
				Config         json.RawMessage `json:"config"`
			}{img.Ref, img.Digest, img.ManifestDigest, img.Platform, img.RawManifest, img.RawConfig})
		}
	}}
}

func imageRmCmd() command {
	return command{summary: "remove image names; blobs and unpacked layers no image or mounted bundle uses are deleted", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) == 0 {
				return errors.New("image rm: expects one or more images")
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			names, rep, err := st.Remove(ctx, args)
			for _, n := range names {
				fmt.Fprintf(a.stdout, "Untagged: %s\n", n)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted %d blobs, %s; %d unpacked layers\n", len(rep.Blobs), humanBytes(rep.Bytes), len(rep.Layers))
			return nil
		}
	}}
}

func imageTagCmd() command {
	return command{summary: "give an image another name", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("image tag", args, 2, "SOURCE and TARGET"); err != nil {
				return err
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			_, err = st.Tag(ctx, args[0], args[1])
			return err
		}
	}}
}

func imageSaveCmd() command {
	return command{summary: "write images to an oci-archive or docker-archive", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		out := fs.StringP("output", "o", "", "archive file (default: stdout, unless it is a terminal)")
		format := fs.String("format", image.FormatOCIArchive, "oci-archive or docker-archive")
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) == 0 {
				return errors.New("image save: expects one or more images")
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			if *out == "" {
				if f, ok := a.stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					return errors.New("image save: refusing to write an archive to a terminal; use -o FILE")
				}
				return st.Save(ctx, a.stdout, args, *format)
			}
			// Write beside the target and rename, so a failed save leaves no half archive.
			tmp, err := os.CreateTemp(filepath.Dir(*out), "."+filepath.Base(*out)+".*")
			if err != nil {
				return fmt.Errorf("image save: %w", err)
			}
			defer os.Remove(tmp.Name())
			err = st.Save(ctx, tmp, args, *format)
			if cerr := tmp.Close(); err == nil && cerr != nil {
				err = fmt.Errorf("image save: %w", cerr)
			}
			if err != nil {
				return err
			}
			if err := os.Chmod(tmp.Name(), 0o644); err != nil {
				return fmt.Errorf("image save: %w", err)
			}
			if err := os.Rename(tmp.Name(), *out); err != nil {
				return fmt.Errorf("image save: %w", err)
			}
			return nil
		}
	}}
}

func imageLoadCmd() command {
	return command{summary: "read images from an oci-archive or docker-archive", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		in := fs.StringP("input", "i", "", "archive file (default: stdin)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("image load", args, 0, "no arguments (use -i FILE)"); err != nil {
				return err
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			var r io.Reader = os.Stdin
			if *in != "" {
				f, err := os.Open(*in)
				if err != nil {
					return fmt.Errorf("image load: %w", err)
				}
				defer f.Close()
				r = f
			}
			names, err := st.Load(ctx, r)
			if err != nil {
				return err
			}
			for _, n := range names {
				fmt.Fprintf(a.stdout, "Loaded image: %s\n", n)
			}
			return nil
		}
	}}
}

func imagePruneCmd() command {
	return command{summary: "delete blobs and unpacked layers no image or mounted bundle uses (--build-cache: and the build cache)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		buildCache := fs.Bool("build-cache", false, "also delete the build cache: cached steps, their layers and the base images unpacked for builds")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("image prune", args, 0, "no arguments"); err != nil {
				return err
			}
			if *buildCache {
				rep, err := build.PruneCache(ctx, a.storage)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "Deleted build cache: %d steps, %d directories, %s\n", rep.Steps, rep.Dirs, humanBytes(rep.Bytes))
			}
			st, err := a.images()
			if err != nil {
				return err
			}
			rep, err := st.Prune(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Deleted %d blobs, %s; %d unpacked layers\n", len(rep.Blobs), humanBytes(rep.Bytes), len(rep.Layers))
			return nil
		}
	}}
}
