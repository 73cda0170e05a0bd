package build

import (
	"os"
	"path/filepath"
	"testing"
)

func TestStepCache(t *testing.T) {
	c := stepCache{dir: t.TempDir()}
	key := hashKey("step")
	mkUpper := func(content string) string {
		t.Helper()
		d := filepath.Join(t.TempDir(), "upper")
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "f"), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return d
	}
	if _, ok := c.get(key); ok {
		t.Fatal("an empty cache has an entry")
	}
	// An entry without its layer directory is no hit.
	if err := c.put(key, cacheEntry{DiffID: "sha256:1"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.get(key); ok {
		t.Error("an entry without its layer directory is a hit")
	}
	steps := []struct {
		content, diffID string
	}{
		{"first", "sha256:1"},
		{"second", "sha256:2"}, // a --no-cache rebuild replaces the directory
	}
	for _, s := range steps {
		dir, err := c.adopt(key, mkUpper(s.content))
		if err != nil {
			t.Fatalf("adopt %s: %v", s.content, err)
		}
		if err := c.put(key, cacheEntry{DiffID: s.diffID}); err != nil {
			t.Fatal(err)
		}
		e, ok := c.get(key)
		if !ok || e.DiffID != s.diffID {
			t.Errorf("get = %+v, %v; want %s", e, ok, s.diffID)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "f")); string(b) != s.content {
			t.Errorf("layer directory holds %q, want %q", b, s.content)
		}
	}
	if ents, _ := os.ReadDir(filepath.Join(c.dir, "trash")); len(ents) != 1 {
		t.Errorf("%d directories in the trash, want the replaced one", len(ents))
	}
	c.sweep()
	if ents, _ := os.ReadDir(filepath.Join(c.dir, "trash")); len(ents) != 0 {
		t.Errorf("sweep left %d directories", len(ents))
	}
}
