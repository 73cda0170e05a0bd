package bsdnet

import (
	"bytes"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestIfName(t *testing.T) {
	tests := []struct {
		in      string
		wantErr string
	}{
		{"bridge0", ""},
		{"knv0123456789", ""},
		{strings.Repeat("x", 15), ""},
		{strings.Repeat("x", 16), "longer than 15"},
		{"", "empty"},
		{"a/b", "invalid character"},
		{"a\x00b", "invalid character"},
	}
	for _, tt := range tests {
		b, err := IfName(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("IfName(%q) error %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Fatalf("IfName(%q): %v", tt.in, err)
		}
		if got := cString(b[:]); got != tt.in || b[IFNAMSIZ-1] != 0 {
			t.Errorf("IfName(%q) = %q (last byte %d)", tt.in, got, b[IFNAMSIZ-1])
		}
	}
}

func TestIfreqLayout(t *testing.T) {
	mac, _ := net.ParseMAC("0a:58:0a:58:00:02")
	tests := []struct {
		name string
		set  func(r *Ifreq)
		want []byte // bytes 16..32, the ifr_ifru union
	}{
		{"ifr_flags IFF_UP", func(r *Ifreq) { r.SetFlags(IFF_UP) }, []byte{1, 0, 0, 0}},
		{"ifr_flagshigh", func(r *Ifreq) { r.SetFlags(0x00018001) }, []byte{0x01, 0x80, 0x01, 0x00}},
		{"ifr_mtu 9000", func(r *Ifreq) { r.SetInt(9000) }, []byte{0x28, 0x23, 0, 0}},
		{"ifr_jid 7", func(r *Ifreq) { r.SetInt(7) }, []byte{7, 0, 0, 0}},
		{"ifr_data", func(r *Ifreq) { r.SetData(0x0000c000123456f8) }, []byte{0xf8, 0x56, 0x34, 0x12, 0x00, 0xc0, 0, 0}},
		{"ifr_addr lladdr", func(r *Ifreq) {
			if err := r.SetLinkAddr(mac); err != nil {
				t.Fatal(err)
			}
		}, []byte{6, AF_LINK, 0x0a, 0x58, 0x0a, 0x58, 0x00, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := NewIfreq("epair12a")
			if err != nil {
				t.Fatal(err)
			}
			tt.set(r)
			if got := r.Name(); got != "epair12a" {
				t.Errorf("name %q", got)
			}
			want := make([]byte, 16)
			copy(want, tt.want)
			if !bytes.Equal(r[16:], want) {
				t.Errorf("union = % x, want % x", r[16:], want)
			}
			if !bytes.Equal(r[8:16], make([]byte, 8)) {
				t.Errorf("name padding not zero: % x", r[:16])
			}
		})
	}
	r, _ := NewIfreq("em0")
	r.SetFlags(0x18843)
	if r.Flags() != 0x18843 {
		t.Errorf("Flags() = %#x", r.Flags())
	}
	r.SetInt(-1)
	if r.Int() != -1 {
		t.Errorf("Int() = %d", r.Int())
	}
	if err := r.SetLinkAddr(net.HardwareAddr{1, 2, 3}); err == nil {
		t.Error("SetLinkAddr accepted a 3-byte address")
	}
}

func TestIfreqAddr(t *testing.T) {
	r, _ := NewIfreq("eth0")
	copy(r[16:], []byte{16, AF_INET, 0, 0, 10, 88, 0, 2})
	a, err := r.Addr()
	if err != nil || a != netip.MustParseAddr("10.88.0.2") {
		t.Errorf("Addr() = %v, %v", a, err)
	}
	r[17] = AF_LINK
	if _, err := r.Addr(); err == nil {
		t.Error("Addr() accepted AF_LINK")
	}
}

func TestEpairPeer(t *testing.T) {
	tests := []struct{ in, want string }{
		{"epair0a", "epair0b"},
		{"epair123a", "epair123b"},
		{"epair0b", ""},
		{"bridge0", ""},
		{"epaira", ""},
	}
	for _, tt := range tests {
		got, err := EpairPeer(tt.in)
		if got != tt.want || (err != nil) != (tt.want == "") {
			t.Errorf("EpairPeer(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestInAliasreq(t *testing.T) {
	tests := []struct {
		prefix          string
		addr, brd, mask [4]byte
	}{
		{"10.88.0.2/24", [4]byte{10, 88, 0, 2}, [4]byte{10, 88, 0, 255}, [4]byte{255, 255, 255, 0}},
		{"172.31.9.130/26", [4]byte{172, 31, 9, 130}, [4]byte{172, 31, 9, 191}, [4]byte{255, 255, 255, 192}},
		{"127.0.0.1/8", [4]byte{127, 0, 0, 1}, [4]byte{127, 255, 255, 255}, [4]byte{255, 0, 0, 0}},
		{"192.0.2.7/32", [4]byte{192, 0, 2, 7}, [4]byte{192, 0, 2, 7}, [4]byte{255, 255, 255, 255}},
	}
	for _, tt := range tests {
		b, err := InAliasreq("eth0", netip.MustParsePrefix(tt.prefix))
		if err != nil {
			t.Fatalf("%s: %v", tt.prefix, err)
		}
		if len(b) != 68 || cString(b[:16]) != "eth0" {
			t.Fatalf("%s: len %d name %q", tt.prefix, len(b), cString(b[:16]))
		}
		for _, f := range []struct {
			what string
			off  int
			want [4]byte
		}{{"ifra_addr", 16, tt.addr}, {"ifra_broadaddr", 32, tt.brd}, {"ifra_mask", 48, tt.mask}} {
			sa := b[f.off : f.off+16]
			if sa[0] != 16 || sa[1] != AF_INET || sa[2] != 0 || sa[3] != 0 || [4]byte(sa[4:8]) != f.want || !bytes.Equal(sa[8:], make([]byte, 8)) {
				t.Errorf("%s %s = % x, want len 16 AF_INET %v", tt.prefix, f.what, sa, f.want)
			}
		}
		if v := binary.LittleEndian.Uint32(b[64:]); v != 0 {
			t.Errorf("%s ifra_vhid = %d", tt.prefix, v)
		}
	}
	if _, err := InAliasreq("eth0", netip.MustParsePrefix("fd00::1/64")); err == nil {
		t.Error("InAliasreq accepted IPv6")
	}
	if _, err := InAliasreq("", netip.MustParsePrefix("10.0.0.1/8")); err == nil {
		t.Error("InAliasreq accepted an empty name")
	}
}

func TestIfdrvIfbreq(t *testing.T) {
	br, err := Ifbreq("knv0a1b2c3d4e")
	if err != nil {
		t.Fatal(err)
	}
	if len(br) != 80 || cString(br[:16]) != "knv0a1b2c3d4e" || !bytes.Equal(br[16:], make([]byte, 64)) {
		t.Errorf("ifbreq = % x", br)
	}
	d, err := Ifdrv("knast0", BRDGDEL, SizeofIfbreq, 0xc000010000)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, 40)
	copy(want, "knast0")
	want[16] = BRDGDEL
	want[24] = 80
	binary.LittleEndian.PutUint64(want[32:], 0xc000010000)
	if !bytes.Equal(d[:], want) {
		t.Errorf("ifdrv = % x\nwant   % x", d, want)
	}
	if _, err := Ifdrv(strings.Repeat("b", 16), BRDGADD, 80, 1); err == nil {
		t.Error("Ifdrv accepted a 16-byte name")
	}
}
