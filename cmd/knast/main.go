// knast processes live for milliseconds: the Go runtime need not size GOMAXPROCS from the cgroup's CPU
// limit at start (reading /proc/self/cgroup and mountinfo) nor keep re-reading it.
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command knast is a container toolkit; this binary is its runc-compatible OCI runtime. The global flags
// come before the verb, each verb has its own flags (one file per verb).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/cni"
	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/image"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// app carries the global flags and the wiring every verb needs.
type app struct {
	root          string
	logPath       string
	logFormat     string
	debug         bool
	systemdCgroup bool
	rootless      string
	criu          string
	storage       string

	stdout io.Writer
	stderr io.Writer
	log    *slog.Logger
}

// manager is the lifecycle under --root, attaching knast networks (under --storage) for bundles that ask.
func (a *app) manager() *container.Manager {
	m := container.New(a.root, a.log)
	m.SetNetworker(newNetworker(a))
	return m
}

// command is one verb of the command line.
type command struct {
	summary string
	hidden  bool
	// interspersed is false for verbs whose trailing arguments belong to the container process.
	noInterspersed bool
	flags          func(fs *pflag.FlagSet) func(ctx context.Context, a *app, args []string) error
}

func commands() map[string]command {
	return map[string]command{
		"spec":         specCmd(),
		"create":       createCmd(),
		"start":        startCmd(),
		"exec":         execCmd(),
		"run":          runCmd(),
		"state":        stateCmd(),
		"kill":         killCmd(),
		"delete":       deleteCmd(),
		"list":         listCmd(),
		"features":     featuresCmd(),
		"bundle":       bundleCmd(),
		"build":        buildCmd(),
		"pause":        pauseCmd(),
		"resume":       resumeCmd(),
		"ps":           psCmd(),
		"events":       eventsCmd(),
		"update":       updateCmd(),
		"checkpoint":   unsupportedCmd("checkpoint"),
		"restore":      unsupportedCmd("restore"),
		"init":         initCmd(),
		"vnet-sockets": vnetSocketsCmd(), // bsdnet.HelperVerb
		"pull":         pullCmd(),
		"push":         pushCmd(),
		"images":       imagesCmd(),
		"image":        imageCmd(),
		"login":        loginCmd(),
		"logout":       logoutCmd(),
		"network":      networkCmd(),
	}
}

// exitError carries a process exit status (run returns the container's) through the error path.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	// The same binary is the CNI plugin when reached through a symlink named knast-cni.
	if filepath.Base(os.Args[0]) == cni.PluginType {
		os.Exit(cni.Main("CNI plugin " + cni.PluginType + " " + version))
	}
	a := &app{stdout: os.Stdout, stderr: os.Stderr}
	os.Exit(a.main(os.Args[1:]))
}

func (a *app) main(argv []string) int {
	gf := pflag.NewFlagSet("knast", pflag.ContinueOnError)
	gf.SetInterspersed(false)
	gf.SetOutput(io.Discard)
	gf.StringVar(&a.root, "root", container.DefaultRoot, "directory for container state")
	gf.StringVar(&a.logPath, "log", "", "log file (default: stderr)")
	gf.StringVar(&a.logFormat, "log-format", "text", "log format: text or json")
	gf.BoolVar(&a.debug, "debug", false, "debug logging")
	gf.BoolVar(&a.systemdCgroup, "systemd-cgroup", false, "use the systemd cgroup driver")
	gf.StringVar(&a.rootless, "rootless", "auto", "rootless mode: true, false or auto")
	gf.StringVar(&a.criu, "criu", "criu", "path to criu (checkpoint/restore are not supported)")
	gf.StringVar(&a.storage, "storage", image.DefaultDir, "directory for images (an OCI layout, names and downloads)")
	showVersion := gf.BoolP("version", "v", false, "print the version")
	help := gf.BoolP("help", "h", false, "show help")
	if err := gf.Parse(argv); err != nil {
		fmt.Fprintf(a.stderr, "knast: %v\n", err)
		return 2
	}
	if *showVersion {
		fmt.Fprintf(a.stdout, "knast version %s\nspec: %s\n", version, specVersion())
		return 0
	}
	cmds := commands()
	args := gf.Args()
	if *help || len(args) == 0 {
		a.usage(gf, cmds)
		if len(args) == 0 && !*help {
			return 2
		}
		return 0
	}
	name := args[0]
	cmd, ok := cmds[name]
	if !ok {
		fmt.Fprintf(a.stderr, "knast: unknown command %q (see knast --help)\n", name)
		return 2
	}
	closeLog, err := a.setupLog()
	if err != nil {
		fmt.Fprintf(a.stderr, "knast: %v\n", err)
		return 1
	}
	defer closeLog()

	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetInterspersed(!cmd.noInterspersed)
	fs.SetOutput(a.stderr)
	run := cmd.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return a.fail(fmt.Errorf("%s: %w", name, err))
	}
	if err := a.checkGlobal(); err != nil {
		return a.fail(err)
	}
	ctx := context.Background()
	switch name {
	case "run":
		// run forwards these signals to the container itself.
	case "init":
		// The container's init: a signal before it execs the user process ends it (its default action).
	default:
		var stop context.CancelFunc
		ctx, stop = cancelOnSignal(ctx, unix.SIGTERM, unix.SIGINT)
		defer stop()
	}
	if err := run(ctx, a, fs.Args()); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		return a.fail(err)
	}
	return 0
}

// cancelOnSignal is signal.NotifyContext without its cost on the command's path: os/signal's first
// Notify waits for a thread of its own to update the signal mask, about half a millisecond on a small VM
// in every knast process, so it is set up in a goroutine beside the command. A signal in that first
// moment ends knast with the signal's default action, as a SIGKILL would at any moment (delete --force
// cleans up after either); after it, the signal cancels the context and the command rolls back.
func cancelOnSignal(parent context.Context, sigs ...os.Signal) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(parent)
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, sigs...)
		select {
		case <-ch:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// checkGlobal refuses global flags whose meaning knast cannot honour, instead of silently ignoring them.
func (a *app) checkGlobal() error {
	if a.systemdCgroup {
		return errors.New("--systemd-cgroup: the systemd cgroup driver is not supported; use the cgroupfs driver (omit the flag)")
	}
	switch a.rootless {
	case "auto", "true", "false":
	default:
		return fmt.Errorf("--rootless: %q is not one of true, false, auto", a.rootless)
	}
	if a.logFormat != "text" && a.logFormat != "json" {
		return fmt.Errorf("--log-format: %q is not one of text, json", a.logFormat)
	}
	return nil
}

// setupLog sends log records to --log (or stderr) in the chosen format. containerd reads the last
// {"level":"error","msg":...} line of the log file as the error to show.
func (a *app) setupLog() (func(), error) {
	var w io.Writer = a.stderr
	closeFn := func() {}
	if a.logPath != "" {
		f, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, fmt.Errorf("--log: %w", err)
		}
		w, closeFn = f, func() { f.Close() }
	}
	level := slog.LevelWarn
	if a.debug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: func(_ []string, at slog.Attr) slog.Attr {
		if at.Key == slog.LevelKey {
			at.Value = slog.StringValue(strings.ToLower(at.Value.String()))
		}
		return at
	}}
	if a.logFormat == "json" {
		a.log = slog.New(slog.NewJSONHandler(w, opts))
	} else {
		a.log = slog.New(slog.NewTextHandler(w, opts))
	}
	return closeFn, nil
}

// fail reports err on stderr and, when a log file is set, as its last error line.
func (a *app) fail(err error) int {
	fmt.Fprintf(a.stderr, "knast: %v\n", err)
	if a.logPath != "" && a.log != nil {
		a.log.Error(err.Error())
	}
	return 1
}

func (a *app) usage(gf *pflag.FlagSet, cmds map[string]command) {
	fmt.Fprintf(a.stdout, "knast — a container runtime with runc's command line\n\nUsage: knast [global flags] COMMAND [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(cmds))
	for n, c := range cmds {
		if !c.hidden {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(a.stdout, "  %-11s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintf(a.stdout, "\nGlobal flags:\n%s", gf.FlagUsages())
}

// needArgs checks the positional arguments of a verb.
func needArgs(verb string, args []string, n int, what string) error {
	if len(args) != n {
		return fmt.Errorf("%s: expects %s, got %d argument(s)", verb, what, len(args))
	}
	return nil
}

func unsupportedCmd(name string) command {
	return command{summary: name + " (not supported: knast does not checkpoint containers)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		fs.ParseErrorsAllowlist.UnknownFlags = true
		return func(context.Context, *app, []string) error {
			return fmt.Errorf("%s: checkpoint/restore is not supported by knast", name)
		}
	}}
}
