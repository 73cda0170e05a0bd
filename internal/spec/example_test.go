package spec

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestExampleRoundTrip writes each example as `knast spec` would, loads it back and expects the same spec.
func TestExampleRoundTrip(t *testing.T) {
	for _, rootless := range []bool{false, true} {
		ex := Example(rootless)
		if err := Validate(ex); err != nil {
			t.Fatalf("Example(%v) does not validate: %v", rootless, err)
		}
		data, err := json.MarshalIndent(ex, "", "\t")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
			t.Fatal(err)
		}
		got, err := Load(dir)
		if err != nil {
			t.Fatalf("Load(Example(%v)): %v", rootless, err)
		}
		if diff := cmp.Diff(ex, got); diff != "" {
			t.Errorf("Example(%v) changed through JSON (-want +got):\n%s", rootless, diff)
		}
	}
}

func TestExampleFields(t *testing.T) {
	ex := Example(false)
	if ex.Version != specs.Version || ex.Version != "1.3.0" {
		t.Errorf("ociVersion = %q, want 1.3.0", ex.Version)
	}
	if ex.Linux.Seccomp == nil || ex.Linux.Seccomp.DefaultAction != specs.ActErrno || len(ex.Linux.Seccomp.Syscalls) == 0 {
		t.Error("Example lacks the default seccomp profile")
	}
	wantNS := []specs.LinuxNamespaceType{"pid", "network", "ipc", "uts", "mount"}
	if cgroup2Unified() {
		wantNS = append(wantNS, "cgroup")
	}
	if diff := cmp.Diff(wantNS, nsTypes(ex)); diff != "" {
		t.Errorf("namespaces (-want +got):\n%s", diff)
	}
	// Each call builds a fresh value: callers may modify what they get.
	ex.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	ex.Mounts[1].Options[0] = "changed"
	again := Example(false)
	if again.Process.Capabilities.Bounding[0] != "CAP_AUDIT_WRITE" || again.Mounts[1].Options[0] != "nosuid" {
		t.Error("Example shares slices between calls")
	}
	if ex.Process.Capabilities.Effective[0] != "CAP_AUDIT_WRITE" {
		t.Error("capability sets share one backing array")
	}
}

func nsTypes(s *specs.Spec) []specs.LinuxNamespaceType {
	var out []specs.LinuxNamespaceType
	for _, ns := range s.Linux.Namespaces {
		out = append(out, ns.Type)
	}
	return out
}

func TestToRootless(t *testing.T) {
	s := Example(false)
	s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/x"})
	toRootless(s, 1000, 2000)
	if err := Validate(s); err != nil {
		t.Fatal(err)
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Type == specs.NetworkNamespace {
			t.Error("rootless spec keeps a network namespace")
		}
	}
	if got := nsTypes(s); got[len(got)-1] != specs.UserNamespace || slices.Index(got, specs.UserNamespace) != len(got)-1 {
		t.Errorf("namespaces %v: want exactly one user namespace, last", got)
	}
	if s.Linux.Namespaces[len(s.Linux.Namespaces)-1].Path != "" {
		t.Error("rootless user namespace is joined, want new")
	}
	wantUID := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
	wantGID := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 2000, Size: 1}}
	if diff := cmp.Diff(wantUID, s.Linux.UIDMappings); diff != "" {
		t.Errorf("uidMappings (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(wantGID, s.Linux.GIDMappings); diff != "" {
		t.Errorf("gidMappings (-want +got):\n%s", diff)
	}
	if s.Linux.Resources != nil {
		t.Error("rootless spec keeps cgroup resources")
	}
	for _, m := range s.Mounts {
		switch m.Destination {
		case "/sys":
			want := specs.Mount{Destination: "/sys", Type: "none", Source: "/sys",
				Options: []string{"rbind", "nosuid", "noexec", "nodev", "ro"}}
			if diff := cmp.Diff(want, m); diff != "" {
				t.Errorf("/sys mount (-want +got):\n%s", diff)
			}
		case "/dev/pts":
			if slices.Contains(m.Options, "gid=5") {
				t.Errorf("/dev/pts keeps gid=5: %v", m.Options)
			}
		}
	}
	// The rootful example is untouched by converting another one.
	if orig := Example(false); !slices.Contains(orig.Mounts[2].Options, "gid=5") {
		t.Errorf("Example(false) /dev/pts options lost gid=5: %v", orig.Mounts[2].Options)
	}
}

// TestExampleMatchesRunc compares Example with what the installed runc writes, after removing the differences
// that are deliberate or come from the runc version.
func TestExampleMatchesRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc is not installed; nothing to compare with")
	}
	for _, rootless := range []bool{false, true} {
		dir := t.TempDir()
		args := []string{"spec"}
		if rootless {
			args = append(args, "--rootless")
		}
		cmd := exec.Command(runc, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("runc %v: %v: %s", args, err, out)
		}
		data, err := os.ReadFile(filepath.Join(dir, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var want specs.Spec
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatal(err)
		}
		// Deliberate: knast writes the runtime-spec version it is built with.
		want.Version = specs.Version
		// Older runc also filled the ambient set; current runc leaves it empty.
		want.Process.Capabilities.Ambient = nil
		// Current runc also masks the TPM class directory.
		if !slices.Contains(want.Linux.MaskedPaths, "/sys/devices/virtual/tpm") {
			want.Linux.MaskedPaths = append(want.Linux.MaskedPaths, "/sys/devices/virtual/tpm")
		}
		got := Example(rootless)
		// Deliberate: knast's example carries containerd's default seccomp profile; TestExampleFields checks it.
		want.Linux.Seccomp = got.Linux.Seccomp
		// Older runc never adds a cgroup namespace; TestExampleFields checks ours.
		dropCgroupNS(&want)
		dropCgroupNS(got)
		if diff := cmp.Diff(&want, got); diff != "" {
			t.Errorf("Example(%v) differs from runc %v (-runc +knast):\n%s", rootless, args, diff)
		}
	}
}

func dropCgroupNS(s *specs.Spec) {
	s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
		return ns.Type == specs.CgroupNamespace
	})
}
