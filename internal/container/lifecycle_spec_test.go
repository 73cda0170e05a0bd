package container

import (
	"encoding/json"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/spec"
	"github.com/knast/knast/internal/store"
)

// The lifecycle paths decode only part of the stored config: every field they read must come out as the
// whole decode gives it.
func TestRecLifecycleSpecKeepsWhatTeardownReads(t *testing.T) {
	full := spec.Example(false)
	full.Hooks = &specs.Hooks{
		Poststart: []specs.Hook{{Path: "/bin/true", Args: []string{"true", "a"}, Env: []string{"X=1"}}},
		Poststop:  []specs.Hook{{Path: "/bin/false"}},
	}
	full.Annotations = map[string]string{"org.knast.network": "default"}
	full.Linux.CgroupsPath = "/k8s.io/abc"
	full.FreeBSD = &specs.FreeBSD{Jail: &specs.FreeBSDJail{Parent: "outer"}}
	cfg, err := json.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	rec := &store.Container{ID: "c1", Config: cfg}
	whole, err := recSpec(rec)
	if err != nil {
		t.Fatal(err)
	}
	part, err := recLifecycleSpec(rec)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{
		{"root", part.Root, whole.Root},
		{"hooks", part.Hooks, whole.Hooks},
		{"annotations", part.Annotations, whole.Annotations},
		{"linux.cgroupsPath", part.Linux.CgroupsPath, whole.Linux.CgroupsPath},
		{"linux.namespaces", part.Linux.Namespaces, whole.Linux.Namespaces},
		{"freebsd", part.FreeBSD, whole.FreeBSD},
	} {
		if !reflect.DeepEqual(f.got, f.want) {
			t.Errorf("%s: got %+v, want %+v", f.name, f.got, f.want)
		}
	}
	if len(part.Linux.Namespaces) == 0 || part.Hooks == nil || len(part.Hooks.Poststop) != 1 {
		t.Fatalf("the test config lost its namespaces or hooks: %+v", part)
	}

	if _, err := recLifecycleSpec(&store.Container{ID: "bad", Config: []byte("{")}); err == nil {
		t.Error("a broken stored config decoded without error")
	}
}
