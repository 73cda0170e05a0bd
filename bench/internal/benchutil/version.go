package benchutil

import (
	"context"
	"os/exec"
	"strings"
	"time"
)

// Version is the first line of the output of `bin args...` (typically "--version"), or "?" when the
// command fails or outlives timeout: a report still prints, naming what it could not learn.
func Version(ctx context.Context, timeout time.Duration, bin string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	b, err := exec.CommandContext(ctx, bin, args...).Output()
	if err != nil {
		return "?"
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}
