package testutil

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
)

// BuildKnast builds cmd/knast into dir/knast and returns its path. It runs `go build` by import path, so
// it works from any directory inside the module (a test's working directory is its package's).
func BuildKnast(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "knast")
	// The Makefile's BUILD_FLAGS: a static binary, as users get from `make build`.
	build := exec.CommandContext(ctx, "go", "build", "-tags", "netgo,osusergo", "-ldflags=-extldflags=-static",
		"-o", bin, "github.com/knast/knast/cmd/knast")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/knast: %w\n%s", err, out)
	}
	return bin, nil
}
