package cgroups

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestDeviceRuleString(t *testing.T) {
	tests := []struct {
		d    specs.LinuxDeviceCgroup
		want string
	}{
		{specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}, "a"},
		{specs.LinuxDeviceCgroup{Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "wr"}, "c 1:3 rw"},
		{specs.LinuxDeviceCgroup{Type: "b", Major: ptr[int64](8), Access: "m"}, "b 8:* m"},
		{specs.LinuxDeviceCgroup{Type: "u", Minor: ptr[int64](0)}, "c *:0 rwm"},
	}
	for _, tc := range tests {
		r, err := deviceRule(tc.d)
		if err != nil {
			t.Fatalf("deviceRule(%+v): %v", tc.d, err)
		}
		if got := r.String(); got != tc.want {
			t.Errorf("String() = %q, want %q", got, tc.want)
		}
	}
}

func rules(t *testing.T, ds ...specs.LinuxDeviceCgroup) []devRule {
	t.Helper()
	r, err := deviceRules(ds)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestEmulateDevices(t *testing.T) {
	c13 := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rwm"}
	tests := []struct {
		name      string
		in        []specs.LinuxDeviceCgroup
		wantAllow bool
		want      []string
	}{
		{"nothing: deny all", nil, false, nil},
		{"deny all then allow", []specs.LinuxDeviceCgroup{{Allow: false}, c13}, false, []string{"c 1:3 rwm"}},
		{"partial deny removes access", []specs.LinuxDeviceCgroup{{Allow: false}, c13, {Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "w"}}, false, []string{"c 1:3 rm"}},
		{"full deny removes the rule", []specs.LinuxDeviceCgroup{c13, {Allow: false, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3)}}, false, nil},
		{"allow all resets", []specs.LinuxDeviceCgroup{c13, {Allow: true}}, true, nil},
		{"allow all then deny one", []specs.LinuxDeviceCgroup{{Allow: true}, {Allow: false, Type: "b", Major: ptr[int64](8), Access: "w"}}, true, []string{"b 8:* w"}},
		{"access merged", []specs.LinuxDeviceCgroup{{Allow: true, Type: "c", Major: ptr[int64](5), Minor: ptr[int64](0), Access: "m"}, {Allow: true, Type: "c", Major: ptr[int64](5), Minor: ptr[int64](0), Access: "r"}}, false, []string{"c 5:0 rm"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			allow, ex := emulateDevices(rules(t, tc.in...))
			var got []string
			for _, e := range ex {
				got = append(got, e.String())
				if e.allow == allow {
					t.Errorf("exception %s has the default action", e)
				}
			}
			if allow != tc.wantAllow {
				t.Errorf("default allow = %v, want %v", allow, tc.wantAllow)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("exceptions (-want +got):\n%s", d)
			}
		})
	}
}
