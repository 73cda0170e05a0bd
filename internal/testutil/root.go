package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips t, saying why, unless the test runs as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root (euid %d)", os.Geteuid())
	}
}
