//go:build linux

package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// hookKinds in the order the runtime-spec runs them over one create/start/delete.
var hookKinds = []struct {
	kind, status string
}{
	{"prestart", "created"}, // deprecated hook: "created", as crun and the runtime-tools suite expect
	{"createRuntime", "creating"},
	{"createContainer", "creating"},
	{"startContainer", "created"},
	{"poststart", "running"},
	{"poststop", "stopped"},
}

// recordingHook appends its kind to tmp/order and saves its stdin (the state JSON) to tmp/hook-<kind>.json.
// Hooks in the runtime namespace write through the host path of the rootfs's /tmp; startContainer runs
// in the container, where only /tmp exists; the same script serves both.
func recordingHook(hostTmp, kind string) specs.Hook {
	script := fmt.Sprintf(`d=%q; [ -d "$d" ] || d=/tmp; cat > "$d/hook-%s.json"; echo %s >> "$d/order"`,
		hostTmp, kind, kind)
	return specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", script}, Env: []string{"PATH=/usr/bin:/bin"}}
}

func TestHooks(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("echo ran > /tmp/process")
	hostTmp := rootfsPath(b, "tmp")
	editSpec(func(s *specs.Spec) {
		h := &specs.Hooks{}
		lists := map[string]*[]specs.Hook{
			"prestart": &h.Prestart, "createRuntime": &h.CreateRuntime, "createContainer": &h.CreateContainer,
			"startContainer": &h.StartContainer, "poststart": &h.Poststart, "poststop": &h.Poststop,
		}
		for _, k := range hookKinds {
			*lists[k.kind] = append(*lists[k.kind], recordingHook(hostTmp, k.kind))
		}
		s.Hooks = h
	})(t, b)

	e.mustKnast("create", "--bundle", b, "ctr")
	e.mustKnast("start", "ctr")
	e.waitStatus("ctr", "stopped")
	e.mustKnast("delete", "ctr")

	order, err := os.ReadFile(filepath.Join(hostTmp, "order"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, k := range hookKinds {
		want = append(want, k.kind)
	}
	if got := strings.Fields(string(order)); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("hooks ran in order %v, want %v", got, want)
	}
	if _, err := os.Stat(filepath.Join(hostTmp, "process")); err != nil {
		t.Errorf("the container process did not run: %v", err)
	}
	for _, k := range hookKinds {
		raw, err := os.ReadFile(filepath.Join(hostTmp, "hook-"+k.kind+".json"))
		if err != nil {
			t.Errorf("%s: %v", k.kind, err)
			continue
		}
		var st containerState
		if err := json.Unmarshal(raw, &st); err != nil {
			t.Errorf("%s: stdin is not the state JSON: %v: %q", k.kind, err, raw)
			continue
		}
		if st.ID != "ctr" || st.Status != k.status || st.Bundle != b || st.OCIVersion == "" {
			t.Errorf("%s: state %+v, want id ctr, status %s, bundle %s", k.kind, st, k.status, b)
		}
		if k.kind != "poststop" && st.Pid <= 0 {
			t.Errorf("%s: state pid %d, want the container's init", k.kind, st.Pid)
		}
	}
}

func TestFailingHook(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"prestart", "createRuntime", "createContainer"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle("echo ran > /tmp/process", func(s *specs.Spec) {
				h := specs.Hook{Path: "/bin/sh", Args: []string{"sh", "-c", "echo hook-broke >&2; exit 4"}}
				s.Hooks = &specs.Hooks{}
				switch kind {
				case "prestart":
					s.Hooks.Prestart = []specs.Hook{h}
				case "createRuntime":
					s.Hooks.CreateRuntime = []specs.Hook{h}
				case "createContainer":
					s.Hooks.CreateContainer = []specs.Hook{h}
				}
			})
			r := e.knast("create", "--bundle", b, "ctr")
			if r.Code == 0 {
				t.Fatalf("create with a failing %s hook succeeded: %s", kind, r)
			}
			if !strings.Contains(r.Stderr, "hook") {
				t.Errorf("error does not name the hook: %s", r)
			}
			if _, err := os.Stat(rootfsPath(b, "tmp/process")); err == nil {
				t.Errorf("the container process ran despite the failing hook")
			}
		})
	}
}
