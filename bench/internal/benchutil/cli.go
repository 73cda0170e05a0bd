package benchutil

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/knast/knast/internal/testutil"
	"github.com/opencontainers/runtime-spec/specs-go"
)

// Main is a benchmark program's main: it runs run with the command line and stdout until SIGINT or
// SIGTERM cancels its context, and exits 1 with "name: error" when run fails.
func Main(name string, run func(ctx context.Context, args []string, out io.Writer) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// NeedRoot refuses to go on without root, saying why the benchmark needs it.
func NeedRoot(why string) error {
	if euid := os.Geteuid(); euid != 0 {
		return fmt.Errorf("needs root (euid %d): %s", euid, why)
	}
	return nil
}

// RuntimeSpec has the runtime bin write its example config (`bin spec --bundle dir`, dir made here) and
// reads it back: the configs the benchmarks measure start from a peer's own defaults.
func RuntimeSpec(ctx context.Context, bin, dir string) (*specs.Spec, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("spec dir: %w", err)
	}
	if b, err := exec.CommandContext(ctx, bin, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%s spec: %w: %s", filepath.Base(bin), err, strings.TrimSpace(string(b)))
	}
	return testutil.ReadSpec(dir)
}
