package freebsd

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/spec"
)

// The configs knast writes for FreeBSD hosts must turn into jail parameters and mounts as they are.
func TestKnastConfigsTranslate(t *testing.T) {
	linux := spec.ExampleFreeBSD()
	linux.Mounts = nil
	if err := spec.FreeBSDHost(linux, "linux"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name       string
		s          *specs.Spec
		wantParams []string
		wantTypes  []string
	}{
		{
			name:       "knast spec",
			s:          spec.ExampleFreeBSD(),
			wantParams: []string{"name=c1", "path=/j", "persist", "host=int:1", "host.hostname=knast", "vnet=int:1", "sysvmsg=int:1", "sysvsem=int:1", "sysvshm=int:1", "enforce_statfs=int:2", "devfs_ruleset=int:4", "children.max=int:0"},
			wantTypes:  []string{"devfs", "fdescfs", "procfs"},
		},
		{
			name:       "Linux image",
			s:          linux,
			wantParams: []string{"name=c1", "path=/j", "persist", "host=int:1", "host.hostname=knast", "vnet=int:1", "sysvmsg=int:1", "sysvsem=int:1", "sysvshm=int:1", "enforce_statfs=int:2", "devfs_ruleset=int:4", "children.max=int:0", "linux=int:1", "linux.osname=Linux"},
			wantTypes:  []string{"devfs", "fdescfs", "tmpfs", "linprocfs", "linsysfs"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := JailParams("c1", "/j", tc.s)
			if err != nil {
				t.Fatal(err)
			}
			if got := render(p); !slices.Equal(got, tc.wantParams) {
				t.Errorf("params:\n got %q\nwant %q", got, tc.wantParams)
			}
			ms, err := Mounts(t.TempDir(), "/j", tc.s)
			if err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, m := range ms {
				types = append(types, m.FSType)
			}
			if !slices.Equal(types, tc.wantTypes) {
				t.Errorf("mount types %q, want %q", types, tc.wantTypes)
			}
			if !Nested(ms)[1] {
				t.Error("/dev/fd is not seen as inside /dev")
			}
		})
	}
}
