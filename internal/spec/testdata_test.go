package spec

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the want.txt golden files in testdata/bad from the current errors")

// TestBadConfigs loads every testdata/bad/<name>/config.json; each must fail with an error containing every
// line of its want.txt.
func TestBadConfigs(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "bad", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no testdata/bad cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s, err := Load(dir)
			if err == nil {
				t.Fatalf("Load accepted the config: %+v", s)
			}
			if s != nil {
				t.Errorf("Load returned a spec together with error %v", err)
			}
			golden := filepath.Join(dir, "want.txt")
			if *update {
				if err := os.WriteFile(golden, []byte(err.Error()+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, rerr := os.ReadFile(golden)
			if rerr != nil {
				t.Fatalf("%v (run with -update to create it)", rerr)
			}
			for line := range strings.SplitSeq(strings.TrimSpace(string(want)), "\n") {
				if line = strings.TrimSpace(line); line != "" && !strings.Contains(err.Error(), line) {
					t.Errorf("error %q\ndoes not contain %q", err, line)
				}
			}
			// Every reported line must name the file, so users know where to look.
			for line := range strings.SplitSeq(err.Error(), "\n") {
				if !strings.HasPrefix(line, filepath.Join(dir, "config.json")) {
					t.Errorf("error line %q does not start with the config path", line)
				}
			}
		})
	}
}

// TestGoodConfigs loads every testdata/good/<name>/config.json; each must be accepted.
func TestGoodConfigs(t *testing.T) {
	dirs, err := filepath.Glob(filepath.Join("testdata", "good", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) == 0 {
		t.Fatal("no testdata/good cases")
	}
	for _, dir := range dirs {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			s, err := Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s == nil || s.Version == "" || s.Root == nil {
				t.Fatalf("Load returned an incomplete spec: %+v", s)
			}
		})
	}
}
