package freebsd

import (
	"errors"
	"regexp"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestJailName(t *testing.T) {
	hashed := regexp.MustCompile(`^knast-[0-9a-f]{16}$`)
	for _, tc := range []struct {
		id     string
		same   bool // the id is the name
		hashed bool
	}{
		{"web", true, false},
		{"c-1_a+b", true, false},
		{"1a", true, false},
		{"123", false, true}, // digits would be read as a jid
		{"a.b", false, true}, // a dot separates a parent
	} {
		got := JailName(tc.id)
		if tc.same && got != tc.id {
			t.Errorf("JailName(%q) = %q, want the id", tc.id, got)
		}
		if tc.hashed && !hashed.MatchString(got) {
			t.Errorf("JailName(%q) = %q, want knast-<16 hex>", tc.id, got)
		}
		if JailName(tc.id) != got {
			t.Errorf("JailName(%q) is not stable", tc.id)
		}
	}
	if JailName("1.2") == JailName("12") {
		t.Error("distinct ids share a jail name")
	}
	s := &specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Parent: "pod"}}}
	if got := FullJailName("web", s); got != "pod.web" {
		t.Errorf("FullJailName under a parent = %q, want pod.web", got)
	}
}

func intp(v int) *int { return &v }

func TestJailParams(t *testing.T) {
	base := []string{"name=c1", "path=/r", "persist"}
	tail := []string{"devfs_ruleset=int:4", "children.max=int:0"}
	join := func(parts ...[]string) []string { return slices.Concat(parts...) }
	for _, tc := range []struct {
		name    string
		s       specs.Spec
		want    []string
		wantErr string
	}{
		{
			name: "defaults",
			s:    specs.Spec{},
			want: join(base, []string{"enforce_statfs=int:2"}, tail),
		},
		{
			name: "hostname and domainname",
			s:    specs.Spec{Hostname: "h", Domainname: "example.org"},
			want: join(base, []string{"host.hostname=h", "host.domainname=example.org", "enforce_statfs=int:2"}, tail),
		},
		{
			name: "vnet jail with its own IPC and host names",
			s: specs.Spec{Hostname: "h", FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{
				Host: "new", Vnet: "new", SysVMsg: "new", SysVSem: "inherit", SysVShm: "disable",
			}}},
			want: join(base, []string{"host=int:1", "host.hostname=h", "vnet=int:1", "sysvmsg=int:1", "sysvsem=int:2", "sysvshm=int:0", "enforce_statfs=int:2"}, tail),
		},
		{
			name: "addresses restricted",
			s: specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{
				Ip4: "new", Ip4Addr: []string{"10.1.2.3"}, Ip6: "disable",
			}}},
			want: join(base, []string{"ip4=int:1", "ip4.addr=hex:0a010203", "ip6=int:0", "enforce_statfs=int:2"}, tail),
		},
		{
			name: "allow section: every flag explicit, mounts lower enforce_statfs",
			s: specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Allow: &specs.FreeBSDJailAllow{
				RawSockets: true, Mount: []string{"tmpfs", "nullfs"}, Suser: true,
			}}}},
			want: join(base, []string{
				"enforce_statfs=int:1",
				"allow.noset_hostname", "allow.raw_sockets", "allow.nochflags", "allow.noquotas", "allow.nosocket_af",
				"allow.nomlock", "allow.noreserved_ports", "allow.suser", "allow.mount", "allow.mount.tmpfs", "allow.mount.nullfs",
			}, tail),
		},
		{
			name: "allow without mounts and suser false keeps the kernel's suser",
			s:    specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{EnforceStatfs: intp(0), Allow: &specs.FreeBSDJailAllow{SetHostname: true}}}},
			want: join(base, []string{
				"enforce_statfs=int:0",
				"allow.set_hostname", "allow.noraw_sockets", "allow.nochflags", "allow.noquotas", "allow.nosocket_af",
				"allow.nomlock", "allow.noreserved_ports", "allow.nomount",
			}, tail),
		},
		{
			name: "annotations: securelevel, ruleset, children",
			s: specs.Spec{Annotations: map[string]string{
				AnnotationSecurelevel: "3", AnnotationDevfsRuleset: "10", AnnotationChildrenMax: "2",
			}},
			want: join(base, []string{"enforce_statfs=int:2", "devfs_ruleset=int:10", "children.max=int:2", "securelevel=int:3"}),
		},
		{
			name: "Linux image: its own Linux ABI identity",
			s:    specs.Spec{Annotations: map[string]string{AnnotationImageOS: "linux", AnnotationLinuxOSRelease: "5.15.0"}},
			want: join(base, []string{"enforce_statfs=int:2"}, tail, []string{"linux=int:1", "linux.osname=Linux", "linux.osrelease=5.15.0"}),
		},
		{
			name:    "inherited host names conflict with a hostname",
			s:       specs.Spec{Hostname: "h", FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Host: "inherit"}}},
			wantErr: "freebsd.jail.host",
		},
		{
			name:    "vnet cannot be disabled",
			s:       specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Vnet: "disable"}}},
			wantErr: "freebsd.jail.vnet",
		},
		{
			name:    "inherit with addresses",
			s:       specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Ip4: "inherit", Ip4Addr: []string{"10.0.0.1"}}}},
			wantErr: "conflicts with ip4Addr",
		},
		{
			name:    "bad address",
			s:       specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Ip6Addr: []string{"10.0.0.1"}}}},
			wantErr: "freebsd.jail.ip6Addr",
		},
		{
			name:    "enforce_statfs out of range",
			s:       specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{EnforceStatfs: intp(3)}}},
			wantErr: "enforceStatfs",
		},
		{
			name:    "bad securelevel",
			s:       specs.Spec{Annotations: map[string]string{AnnotationSecurelevel: "high"}},
			wantErr: AnnotationSecurelevel,
		},
		{
			name:    "mount type with a dot",
			s:       specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Allow: &specs.FreeBSDJailAllow{Mount: []string{"a.b"}}}}},
			wantErr: "allow.mount",
		},
		{
			name:    "NUL in hostname",
			s:       specs.Spec{Hostname: "a\x00b"},
			wantErr: "hostname",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := JailParams("c1", "/r", &tc.s)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := render(p); !slices.Equal(got, tc.want) {
				t.Errorf("params:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestJailParamsInterfaceUnsupported(t *testing.T) {
	s := &specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Interface: "lo1"}}}
	if _, err := JailParams("c1", "/r", s); !errors.Is(err, errors.ErrUnsupported) {
		t.Fatalf("err = %v, want ErrUnsupported", err)
	}
}

func TestJailParamsParent(t *testing.T) {
	s := &specs.Spec{FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{Parent: "pod"}}}
	p, err := JailParams("123", "/r", s)
	if err != nil {
		t.Fatal(err)
	}
	if got := render(p)[0]; got != "name=pod."+JailName("123") {
		t.Errorf("first param %q, want the name under the parent", got)
	}
}
