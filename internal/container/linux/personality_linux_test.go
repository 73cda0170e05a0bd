//go:build linux

package linux

import (
	"runtime"
	"strings"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSetPersonality(t *testing.T) {
	procNeedBusybox(t)
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	native := unix.ByteSliceToString(u.Machine[:])
	linux32 := map[string]string{"amd64": "i686", "arm64": "armv8l"}[runtime.GOARCH]
	tests := []struct {
		name string
		p    *specs.LinuxPersonality
		want string
	}{
		{"LINUX32", &specs.LinuxPersonality{Domain: specs.PerLinux32}, linux32},
		{"LINUX", &specs.LinuxPersonality{Domain: specs.PerLinux}, native},
		{"nil", nil, native},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == "" {
				t.Skipf("no 32-bit personality name known for %s", runtime.GOARCH)
			}
			res := procRunChild(t, procChildReq{
				Op: "personality", Persona: tt.p,
				Exec: []string{procBusybox, "uname", "-m"},
			}, 0)
			if res.Err != "" {
				t.Fatalf("SetPersonality: %s", res.Err)
			}
			if got := strings.Join(res.Output, "\n"); got != tt.want {
				t.Errorf("uname -m = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetPersonalityInvalid(t *testing.T) {
	tests := []struct {
		name string
		p    *specs.LinuxPersonality
		want []string
	}{
		{"unknown domain", &specs.LinuxPersonality{Domain: "LINUX64"}, []string{"domain", "LINUX64"}},
		{"flags", &specs.LinuxPersonality{Domain: specs.PerLinux, Flags: []specs.LinuxPersonalityFlag{"ADDR_NO_RANDOMIZE"}},
			[]string{"flags", "ADDR_NO_RANDOMIZE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Rejected before personality(2) is called, so this leaves the test process alone.
			err := SetPersonality(tt.p)
			if err == nil {
				t.Fatal("SetPersonality succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
