//go:build linux

package linux

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"
)

func TestCapabilityNames(t *testing.T) {
	names := CapabilityNames()
	for _, want := range []string{"CAP_CHOWN", "CAP_NET_BIND_SERVICE", "CAP_SYS_ADMIN", "CAP_CHECKPOINT_RESTORE"} {
		if !slices.Contains(names, want) {
			t.Errorf("CapabilityNames() lacks %s", want)
		}
	}
	if names[0] != "CAP_CHOWN" {
		t.Errorf("first name = %s, want CAP_CHOWN (number order)", names[0])
	}
	seen := map[string]bool{}
	for _, n := range names {
		if !strings.HasPrefix(n, "CAP_") || strings.ToUpper(n) != n {
			t.Errorf("bad name %q", n)
		}
		if seen[n] {
			t.Errorf("duplicate %q", n)
		}
		seen[n] = true
		if _, ok := capLookup(n); !ok {
			t.Errorf("capLookup(%q) fails", n)
		}
	}
}

func TestCapParse(t *testing.T) {
	tests := []struct {
		name    string
		names   []string
		last    capability.Cap
		want    uint64
		wantErr string
	}{
		{"runc default", []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}, 40, 0x20000420, ""},
		{"empty", nil, 40, 0, ""},
		{"highest known", []string{"CAP_CHECKPOINT_RESTORE"}, 40, 1 << 40, ""},
		{"newer than the kernel is skipped", []string{"CAP_BPF", "CAP_CHECKPOINT_RESTORE", "CAP_CHOWN"}, 37, 1, ""},
		{"unknown", []string{"CAP_CHOWN", "CAP_FLY"}, 40, 0, `process.capabilities.permitted: unknown capability "CAP_FLY"`},
		{"no prefix", []string{"CHOWN"}, 40, 0, `unknown capability "CHOWN"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := capParse("permitted", tt.names, tt.last)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("mask = %#x, want %#x", got, tt.want)
			}
		})
	}
}

func TestCapCheck(t *testing.T) {
	const (
		kill     = 1 << 5
		nbs      = 1 << 10
		resource = 1 << 24
		all      = 1<<41 - 1
	)
	root := capSets{bounding: all &^ resource, effective: all &^ resource, permitted: all &^ resource}
	tests := []struct {
		name    string
		want    capSets
		cur     capSets
		wantErr []string
	}{
		{"runc default", capSets{bounding: kill | nbs, effective: kill | nbs, permitted: kill | nbs}, root, nil},
		{"inheritable and ambient", capSets{bounding: nbs, effective: nbs, permitted: nbs, inheritable: nbs, ambient: nbs}, root, nil},
		{"permitted lacking from the runtime", capSets{permitted: resource | kill}, root,
			[]string{"permitted", "CAP_SYS_RESOURCE", "does not hold"}},
		{"effective outside permitted", capSets{effective: kill | nbs, permitted: kill}, root,
			[]string{"effective", "CAP_NET_BIND_SERVICE", "permitted"}},
		{"inheritable outside bounding", capSets{bounding: kill, inheritable: nbs}, root,
			[]string{"inheritable", "CAP_NET_BIND_SERVICE", "bounding"}},
		{"inheritable the runtime lacks", capSets{bounding: kill, inheritable: kill}, capSets{bounding: all},
			[]string{"inheritable", "CAP_KILL", "does not hold"}},
		{"inheritable already held", capSets{bounding: kill, inheritable: kill}, capSets{bounding: all, inheritable: kill}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := capCheck(tt.want, tt.cur)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("capCheck: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("capCheck passed, want an error")
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestFinalizeProcessCapabilities(t *testing.T) {
	procNeedBusybox(t)
	runc := []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	nbs := []string{"CAP_NET_BIND_SERVICE"}
	type sets struct{ bnd, eff, prm, inh, amb uint64 }
	tests := []struct {
		name    string
		uid     uint32
		caps    *specs.LinuxCapabilities
		drop    []string // removed from the child's own sets first, whatever the host grants
		pre     sets     // right after FinalizeProcess
		post    sets     // in the exec'd busybox, after the kernel's execve rules
		wantErr []string
	}{
		{
			name: "runc default as root",
			caps: &specs.LinuxCapabilities{Bounding: runc, Effective: runc, Permitted: runc, Ambient: runc},
			// Ambient without inheritable cannot be raised: skipped, as runc does.
			pre:  sets{bnd: 0x20000420, eff: 0x20000420, prm: 0x20000420},
			post: sets{bnd: 0x20000420, eff: 0x20000420, prm: 0x20000420},
		},
		{
			name: "runc default as uid 1000",
			uid:  1000,
			caps: &specs.LinuxCapabilities{Bounding: runc, Effective: runc, Permitted: runc, Ambient: runc},
			pre:  sets{bnd: 0x20000420, eff: 0x20000420, prm: 0x20000420},
			post: sets{bnd: 0x20000420},
		},
		{
			name: "empty sets as root",
			caps: &specs.LinuxCapabilities{},
		},
		{
			name: "empty sets as uid 1000",
			uid:  1000,
			caps: &specs.LinuxCapabilities{},
		},
		{
			name: "ambient NET_BIND_SERVICE as uid 1000",
			uid:  1000,
			caps: &specs.LinuxCapabilities{Bounding: nbs, Effective: nbs, Permitted: nbs, Inheritable: nbs, Ambient: nbs},
			pre:  sets{bnd: 0x400, eff: 0x400, prm: 0x400, inh: 0x400, amb: 0x400},
			post: sets{bnd: 0x400, eff: 0x400, prm: 0x400, inh: 0x400, amb: 0x400},
		},
		{
			name: "bounding asks for a capability the runtime lacks",
			caps: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL", "CAP_SYS_RESOURCE"}},
			drop: []string{"CAP_SYS_RESOURCE"},
			pre:  sets{bnd: 0x20},
			post: sets{bnd: 0x20, eff: 0x20, prm: 0x20},
		},
		{
			name:    "permitted asks for a capability the runtime lacks",
			caps:    &specs.LinuxCapabilities{Bounding: []string{"CAP_SYS_RESOURCE"}, Permitted: []string{"CAP_KILL", "CAP_SYS_RESOURCE"}},
			drop:    []string{"CAP_SYS_RESOURCE"},
			wantErr: []string{"permitted", "CAP_SYS_RESOURCE"},
		},
		{
			name:    "effective outside permitted",
			caps:    &specs.LinuxCapabilities{Effective: []string{"CAP_KILL"}},
			wantErr: []string{"effective", "CAP_KILL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &specs.Process{User: specs.User{UID: tt.uid, GID: tt.uid}, Capabilities: tt.caps}
			res := procRunChild(t, procChildReq{
				Op: "finalize", Process: p, DropCaps: tt.drop, PrintStatus: true,
				Exec: []string{procBusybox, "cat", "/proc/self/status"},
			}, 0)
			if tt.wantErr != nil {
				if res.Err == "" {
					t.Fatal("FinalizeProcess succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(res.Err, w) {
						t.Errorf("error %q does not mention %q", res.Err, w)
					}
				}
				return
			}
			if res.Err != "" {
				t.Fatalf("FinalizeProcess: %s", res.Err)
			}
			post := procStatusFields(res.Output)
			for _, c := range []struct {
				when   string
				status map[string]string
				want   sets
			}{{"before exec", res.Pre, tt.pre}, {"after exec", post, tt.post}} {
				for _, f := range []struct {
					key  string
					want uint64
				}{{"CapBnd", c.want.bnd}, {"CapEff", c.want.eff}, {"CapPrm", c.want.prm}, {"CapInh", c.want.inh}, {"CapAmb", c.want.amb}} {
					got, err := strconv.ParseUint(c.status[f.key], 16, 64)
					if err != nil {
						t.Fatalf("%s %s = %q: %v", c.when, f.key, c.status[f.key], err)
					}
					if got != f.want {
						t.Errorf("%s %s = %016x, want %016x", c.when, f.key, got, f.want)
					}
				}
			}
		})
	}
}

func TestCapMaskNames(t *testing.T) {
	tests := []struct {
		mask uint64
		want string
	}{
		{0, ""},
		{1, "CAP_CHOWN"},
		{1<<5 | 1<<24, "CAP_KILL, CAP_SYS_RESOURCE"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%#x", tt.mask), func(t *testing.T) {
			if got := capMaskNames(tt.mask); got != tt.want {
				t.Errorf("capMaskNames(%#x) = %q, want %q", tt.mask, got, tt.want)
			}
		})
	}
}
