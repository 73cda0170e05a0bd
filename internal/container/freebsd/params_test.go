package freebsd

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// render shows a parameter list readably: "name" for a boolean, "name=str" for a NUL-terminated
// string, "name=int:N" for 4 bytes that are not a string, "name=hex:..." otherwise.
func render(params []Param) []string {
	out := make([]string, 0, len(params))
	for _, p := range params {
		switch v := p.Value; {
		case v == nil:
			out = append(out, p.Name)
		case strings.HasSuffix(p.Name, ".addr"):
			out = append(out, fmt.Sprintf("%s=hex:%x", p.Name, v))
		case len(v) > 0 && v[len(v)-1] == 0 && bytes.IndexByte(v[:len(v)-1], 0) < 0 && isText(v[:len(v)-1]):
			out = append(out, p.Name+"="+string(v[:len(v)-1]))
		case len(v) == 4:
			out = append(out, fmt.Sprintf("%s=int:%d", p.Name, int32(uint32(v[0])|uint32(v[1])<<8|uint32(v[2])<<16|uint32(v[3])<<24)))
		default:
			out = append(out, fmt.Sprintf("%s=hex:%x", p.Name, v))
		}
	}
	return out
}

func isText(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

func TestNoName(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"persist", "nopersist"},
		{"allow.mount", "allow.nomount"},
		{"allow.mount.tmpfs", "allow.mount.notmpfs"},
		{"allow.set_hostname", "allow.noset_hostname"},
	} {
		if got := NoName(tc.in); got != tc.want {
			t.Errorf("NoName(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParamEncoding(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Param
		want Param
	}{
		{"string is NUL-terminated", Str("path", "/j"), Param{"path", []byte{'/', 'j', 0}}},
		{"empty string is one NUL", Str("host.hostname", ""), Param{"host.hostname", []byte{0}}},
		{"int is 4 bytes little-endian", Int("enforce_statfs", 2), Param{"enforce_statfs", []byte{2, 0, 0, 0}}},
		{"negative int", Int("securelevel", -1), Param{"securelevel", []byte{0xff, 0xff, 0xff, 0xff}}},
		{"bool on is the name, no value", Bool("persist", true), Param{"persist", nil}},
		{"bool off is the no-form", Bool("allow.mount", false), Param{"allow.nomount", nil}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.p.Name != tc.want.Name || !bytes.Equal(tc.p.Value, tc.want.Value) || (tc.p.Value == nil) != (tc.want.Value == nil) {
				t.Errorf("got %q %v, want %q %v", tc.p.Name, tc.p.Value, tc.want.Name, tc.want.Value)
			}
		})
	}
}

func TestEncode(t *testing.T) {
	got := Encode([]Param{Str("name", "c1"), Bool("persist", true), Int("children.max", 3)})
	want := [][]byte{
		[]byte("name\x00"), []byte("c1\x00"),
		[]byte("persist\x00"), nil,
		[]byte("children.max\x00"), {3, 0, 0, 0},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d iovecs, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) || (got[i] == nil) != (want[i] == nil) {
			t.Errorf("iovec %d = %q, want %q", i, got[i], want[i])
		}
	}
}

func TestIPAddrs(t *testing.T) {
	p, err := IP4Addrs("ip4.addr", []string{"10.0.0.1", "192.168.7.254"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{10, 0, 0, 1, 192, 168, 7, 254}; !bytes.Equal(p.Value, want) {
		t.Errorf("ip4.addr = %v, want %v (packed in_addr, network order)", p.Value, want)
	}
	p, err = IP6Addrs("ip6.addr", []string{"fd10::11:12:13", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]byte{0xfd, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x11, 0, 0x12, 0, 0x13}, append(make([]byte, 15), 1)...)
	if !bytes.Equal(p.Value, want) {
		t.Errorf("ip6.addr = %x, want %x", p.Value, want)
	}
	for _, bad := range []struct {
		v6   bool
		addr string
	}{{false, "::1"}, {false, "10.0.0"}, {false, "host"}, {true, "10.0.0.1"}, {true, "::ffff:10.0.0.1"}, {true, "fe80::1%em0"}} {
		var err error
		if bad.v6 {
			_, err = IP6Addrs("ip6.addr", []string{bad.addr})
		} else {
			_, err = IP4Addrs("ip4.addr", []string{bad.addr})
		}
		if err == nil || !strings.Contains(err.Error(), bad.addr) {
			t.Errorf("v6=%v %q: err = %v, want one naming the address", bad.v6, bad.addr, err)
		}
	}
}
