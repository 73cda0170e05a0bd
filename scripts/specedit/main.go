// Command specedit adapts a bundle's config.json for the repository's scripts (quickstart), so they need
// no JSON tool on the host: it sets process.terminal and, when arguments follow the bundle, replaces
// process.args.
//
//	go run ./scripts/specedit [-terminal=false] BUNDLE [ARG...]
package main

import (
	"flag"
	"fmt"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/testutil"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "specedit:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("specedit", flag.ContinueOnError)
	terminal := fs.Bool("terminal", false, "value for process.terminal")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 1 {
		return fmt.Errorf("usage: specedit [-terminal=BOOL] BUNDLE [ARG...]")
	}
	bundle := fs.Arg(0)
	s, err := testutil.ReadSpec(bundle)
	if err != nil {
		return err
	}
	if s.Process == nil {
		s.Process = &specs.Process{Cwd: "/"}
	}
	s.Process.Terminal = *terminal
	if fs.NArg() > 1 {
		s.Process.Args = fs.Args()[1:]
	}
	return testutil.WriteSpec(bundle, s)
}
