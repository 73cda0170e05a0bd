package testutil

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Bundle makes a bundle dir in t.TempDir() with rootfs/ from BusyboxRootfs and config.json = the spec
// produced by running `<knast> spec` there (so it is the product's own default), then applies edit(spec)
// (when non-nil) and rewrites config.json. It fails the test on any error.
func Bundle(t testing.TB, knast string, edit func(*specs.Spec)) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "bundle")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	if err := BusyboxRootfs(filepath.Join(dir, "rootfs")); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(knast, "spec")
	cmd.Dir = dir
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bundle: %s spec: %v: %s", knast, err, stderr.String())
	}
	s, err := ReadSpec(dir)
	if err != nil {
		t.Fatalf("bundle: %v", err)
	}
	if edit != nil {
		edit(s)
	}
	if err := WriteSpec(dir, s); err != nil {
		t.Fatalf("bundle: %v", err)
	}
	return dir
}

// ReadSpec decodes bundle/config.json.
func ReadSpec(bundle string) (*specs.Spec, error) {
	p := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("decode %s: %w", p, err)
	}
	return &s, nil
}

// WriteSpec encodes s as bundle/config.json, replacing any existing file.
func WriteSpec(bundle string, s *specs.Spec) error {
	b, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o644); err != nil {
		return fmt.Errorf("write spec: %w", err)
	}
	return nil
}
