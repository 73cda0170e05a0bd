//go:build linux

package benchutil

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/moby/sys/mountinfo"
)

func TestMachine(t *testing.T) {
	got := Machine()
	tests := []struct {
		name string
		ok   bool
	}{
		{"starts with Linux", strings.HasPrefix(got, "Linux ")},
		{"names the Go version last", strings.HasSuffix(got, ", "+runtime.Version())},
		{"names a cgroup layout", strings.Contains(got, ", cgroup v2, ") || strings.Contains(got, ", cgroup v1/hybrid, ")},
		{"counts CPUs", regexp.MustCompile(`, \d+ CPUs, `).MatchString(got)},
	}
	for _, tt := range tests {
		if !tt.ok {
			t.Errorf("Machine() = %q: %s fails", got, tt.name)
		}
	}
}

func TestLoadAvg(t *testing.T) {
	got := LoadAvg()
	if !regexp.MustCompile(`^\d+\.\d+ \d+\.\d+ \d+\.\d+$`).MatchString(got) {
		t.Errorf("LoadAvg() = %q, want three load averages", got)
	}
}

func TestRemoveCgroupsAbsent(t *testing.T) {
	left, err := RemoveCgroups("knast-benchutil-test-absent")
	if err != nil || len(left) != 0 {
		t.Errorf("RemoveCgroups(absent) = %v, %v; want nothing left and no error", left, err)
	}
}

func TestRemoveCgroupsNested(t *testing.T) {
	// One hierarchy is enough: RemoveCgroups walks them all and skips those without name.
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		t.Fatalf("list cgroup mounts: %v", err)
	}
	if len(mounts) == 0 {
		t.Skip("no cgroup hierarchy is mounted")
	}
	name := fmt.Sprintf("knast-benchutil-test-%d", os.Getpid())
	top := filepath.Join(mounts[0].Mountpoint, name)
	child := filepath.Join(top, "ctr")
	if err := os.MkdirAll(filepath.Join(child, "sub"), 0o755); err != nil {
		t.Fatalf("create test cgroups: %v", err)
	}
	t.Cleanup(func() {
		os.Remove(filepath.Join(child, "sub"))
		os.Remove(child)
		os.Remove(top)
	})
	left, err := RemoveCgroups(name)
	if err != nil {
		t.Fatalf("RemoveCgroups(%s): %v", name, err)
	}
	want := []string{filepath.Join(child, "sub"), child}
	if !slices.Equal(left, want) {
		t.Errorf("RemoveCgroups(%s) left = %q, want %q (deepest first, top not listed)", name, left, want)
	}
	if _, err := os.Stat(top); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there after RemoveCgroups: %v", top, err)
	}
}
