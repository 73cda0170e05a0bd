//go:build linux && cgo

package seccomp

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func cacheProfile() *specs.LinuxSeccomp {
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls: []specs.LinuxSyscall{
			{Names: []string{"mkdirat"}, Action: specs.ActErrno},
			{Names: []string{"personality"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Value: 0xffffffff, Op: specs.OpEqualTo}}},
		},
	}
}

func TestFilterJSONRoundTrip(t *testing.T) {
	f, err := Prepare(cacheProfile())
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var g Filter
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(f.prog, g.prog); diff != "" || f.flags != g.flags || f.listener != g.listener {
		t.Errorf("round trip changed the filter (-want +got):\n%s", diff)
	}
	for _, bad := range []string{`{"prog":"AAAA"}`, `{"prog":""}`, `{"prog":5}`} {
		var h Filter
		if err := json.Unmarshal([]byte(bad), &h); err == nil {
			t.Errorf("Unmarshal(%s) accepted a broken program", bad)
		}
	}
}

func TestPrepareCached(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	want, err := Prepare(cacheProfile())
	if err != nil {
		t.Fatal(err)
	}
	first, err := PrepareCached(cacheProfile(), dir, "6.x-test")
	if err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("cache holds %d entries, want 1", len(ents))
	}
	entry := filepath.Join(dir, ents[0].Name())
	// A cached entry is what is returned: plant a marker in it and see it come back.
	var w filterWire
	b, _ := os.ReadFile(entry)
	json.Unmarshal(b, &w)
	w.Skipped = []string{"from-cache"}
	b, _ = json.Marshal(w)
	os.WriteFile(entry, b, 0o600)
	second, err := PrepareCached(cacheProfile(), dir, "6.x-test")
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(second.skipped, []string{"from-cache"}) {
		t.Errorf("second PrepareCached did not read the cache: skipped %q", second.skipped)
	}
	for _, f := range []*Filter{first, second} {
		if diff := cmp.Diff(want.prog, f.prog); diff != "" {
			t.Errorf("cached program differs (-want +got):\n%s", diff)
		}
	}
	// Another kernel is another key; a corrupt entry is recompiled and repaired.
	if _, err := PrepareCached(cacheProfile(), dir, "other-kernel"); err != nil {
		t.Fatal(err)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 2 {
		t.Errorf("cache holds %d entries after a second kernel, want 2", len(ents))
	}
	os.WriteFile(entry, []byte("garbage"), 0o600)
	third, err := PrepareCached(cacheProfile(), dir, "6.x-test")
	if err != nil || !cmp.Equal(third.prog, want.prog) {
		t.Fatalf("corrupt entry: err %v, program equal %v", err, err == nil && cmp.Equal(third.prog, want.prog))
	}
	if b, _ := os.ReadFile(entry); string(b) == "garbage" {
		t.Error("corrupt entry was not rewritten")
	}
}
