package spec

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func mountTypes(ms []specs.Mount) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.Destination + ":" + m.Type
	}
	return out
}

func TestExampleFreeBSD(t *testing.T) {
	s := ExampleFreeBSD()
	if err := Validate(s); err != nil {
		t.Fatalf("the example does not validate: %v", err)
	}
	if s.Linux != nil {
		t.Error("the FreeBSD example has a linux section")
	}
	j := s.FreeBSD.Jail
	if j.Vnet != specs.FreeBSDShareNew || j.Host != specs.FreeBSDShareNew || j.EnforceStatfs == nil || *j.EnforceStatfs != 2 {
		t.Errorf("jail = %+v, want its own vnet and host names, enforce_statfs 2", j)
	}
	want := []string{"/dev:devfs", "/dev/fd:fdescfs", "/proc:procfs"}
	if got := mountTypes(s.Mounts); !slices.Equal(got, want) {
		t.Errorf("mounts %q, want %q", got, want)
	}
	// The config round-trips through JSON as `knast spec` writes it and Load reads it.
	b, _ := json.Marshal(s)
	var back specs.Spec
	if err := json.Unmarshal(b, &back); err != nil || back.FreeBSD == nil || back.FreeBSD.Jail.Vnet != "new" {
		t.Errorf("round trip: %v %+v", err, back.FreeBSD)
	}
}

func TestFromImageFreeBSD(t *testing.T) {
	rootfs := writeRootfs(t, "root:*:0:0:Charlie &:/root:/bin/sh\napp:*:1001:1001:App:/home/app:/bin/sh\n", "wheel:*:0:root\napp:*:1001:\n")
	for _, tc := range []struct {
		name       string
		os         string
		wantOS     string
		wantMounts []string
		wantErr    string
	}{
		{
			name: "FreeBSD image runs natively", os: "freebsd", wantOS: "freebsd",
			wantMounts: []string{"/dev:devfs", "/dev/fd:fdescfs", "/proc:procfs"},
		},
		{
			name: "Linux image runs in a Linux-ABI jail", os: "linux", wantOS: "linux",
			wantMounts: []string{"/dev:devfs", "/dev/fd:fdescfs", "/dev/shm:tmpfs", "/proc:linprocfs", "/sys:linsysfs"},
		},
		{
			name: "an image without os is Linux's", os: "", wantOS: "linux",
			wantMounts: []string{"/dev:devfs", "/dev/fd:fdescfs", "/dev/shm:tmpfs", "/proc:linprocfs", "/sys:linsysfs"},
		},
		{name: "Windows image", os: "windows", wantErr: `"windows"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img := ocispec.Image{Platform: ocispec.Platform{OS: tc.os}, Config: ocispec.ImageConfig{
				Entrypoint: []string{"/usr/local/bin/app"}, Cmd: []string{"--serve"}, User: "app", Env: []string{"A=1"},
			}}
			s, err := FromImageFreeBSD(img, rootfs, FromImageOptions{Hostname: "web"})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.Linux != nil || s.Process.Capabilities != nil {
				t.Error("Linux-only settings left in a FreeBSD host config")
			}
			if s.Annotations[AnnotationOS] != tc.wantOS {
				t.Errorf("os annotation %q, want %q", s.Annotations[AnnotationOS], tc.wantOS)
			}
			if got := mountTypes(s.Mounts); !slices.Equal(got, tc.wantMounts) {
				t.Errorf("mounts %q, want %q", got, tc.wantMounts)
			}
			p := s.Process
			if p.User.UID != 1001 || p.User.GID != 1001 || !slices.Equal(p.Args, []string{"/usr/local/bin/app", "--serve"}) || !slices.Contains(p.Env, "A=1") {
				t.Errorf("process %+v lost the image's settings", p)
			}
			if s.Hostname != "web" || s.FreeBSD == nil || s.FreeBSD.Jail.Vnet != "new" {
				t.Errorf("hostname %q, freebsd %+v", s.Hostname, s.FreeBSD)
			}
			if err := Validate(s); err != nil {
				t.Errorf("does not validate: %v", err)
			}
		})
	}
}

func TestFreeBSDHost(t *testing.T) {
	s := Example(false)
	s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_RTPRIO", Hard: 1, Soft: 1})
	oom := 100
	s.Process.OOMScoreAdj = &oom
	if err := FreeBSDHost(s, "linux"); err != nil {
		t.Fatal(err)
	}
	var types []string
	for _, r := range s.Process.Rlimits {
		types = append(types, r.Type)
	}
	if !slices.Equal(types, []string{"RLIMIT_NOFILE"}) || s.Process.OOMScoreAdj != nil {
		t.Errorf("rlimits %q, oomScoreAdj %v: Linux-only ones must go", types, s.Process.OOMScoreAdj)
	}
	if err := FreeBSDHost(s, "plan9"); err == nil {
		t.Error("a plan9 image was accepted")
	}
	if err := FreeBSDHost(&specs.Spec{}, "linux"); err == nil {
		t.Error("a config without a process was accepted")
	}
}
