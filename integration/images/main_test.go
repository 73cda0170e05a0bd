//go:build linux

package images

import (
	"fmt"
	"os"
	"testing"

	"github.com/knast/knast/internal/testutil"
)

// TestMain puts every test's t.TempDir under one suite directory and fails the suite when a mount
// (an overlay bundle, a container's rootfs) is left under it.
func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "knast-images-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	os.Setenv("TMPDIR", dir)
	if os.Geteuid() != 0 {
		return m.Run() // the tests skip without root: nothing to check
	}
	return testutil.CheckSuite("images integration", testutil.Scope{Paths: []string{dir}}, m.Run)
}
