package bsdnet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

func TestSASize(t *testing.T) {
	// SA_SIZE, net/route.h: sa_len rounded up to sizeof(long) (8), sizeof(long) when 0.
	tests := []struct{ in, want int }{{0, 8}, {1, 8}, {5, 8}, {8, 8}, {9, 16}, {16, 16}, {17, 24}, {28, 32}, {54, 56}}
	for _, tt := range tests {
		if got := SASize(tt.in); got != tt.want {
			t.Errorf("SASize(%d) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestDefaultRouteMarshal(t *testing.T) {
	gw := netip.MustParseAddr("10.88.0.1")
	tests := []struct {
		typ   byte
		gw    netip.Addr
		mask  int
		addrs uint32
		n     int
	}{
		{RTM_ADD, gw, 0, RTA_DST | RTA_GATEWAY | RTA_NETMASK, 3},
		{RTM_CHANGE, gw, 0, RTA_DST | RTA_GATEWAY | RTA_NETMASK, 3},
		{RTM_GET, netip.Addr{}, 0, RTA_DST | RTA_NETMASK, 2},
		{RTM_DELETE, netip.Addr{}, -1, RTA_DST, 1},
	}
	for _, tt := range tests {
		m := DefaultRoute(tt.typ, tt.gw, 42)
		m.Mask = tt.mask
		b, err := m.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		if len(b) != SizeofRtMsghdr+16*tt.n {
			t.Fatalf("type %d: %d bytes", tt.typ, len(b))
		}
		hdr := struct {
			msglen          uint16
			version, typ    byte
			flags, addrs, s uint32
		}{binary.LittleEndian.Uint16(b), b[2], b[3], binary.LittleEndian.Uint32(b[8:]), binary.LittleEndian.Uint32(b[12:]), binary.LittleEndian.Uint32(b[20:])}
		if int(hdr.msglen) != len(b) || hdr.version != 5 || hdr.typ != tt.typ || hdr.addrs != tt.addrs || hdr.s != 42 ||
			hdr.flags != RTF_UP|RTF_GATEWAY|RTF_STATIC {
			t.Errorf("type %d header %+v", tt.typ, hdr)
		}
		if !bytes.Equal(b[24:SizeofRtMsghdr], make([]byte, SizeofRtMsghdr-24)) {
			t.Errorf("type %d: errno, fmask, inits or metrics not zero", tt.typ)
		}
		sa := b[SizeofRtMsghdr:]
		if !bytes.Equal(sa[:16], []byte{16, AF_INET, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}) {
			t.Errorf("type %d dst % x", tt.typ, sa[:16])
		}
		if tt.gw.IsValid() && !bytes.Equal(sa[16:24], []byte{16, AF_INET, 0, 0, 10, 88, 0, 1}) {
			t.Errorf("type %d gateway % x", tt.typ, sa[16:32])
		}
		// Decoding what was encoded gives the message back.
		got, n, ok, err := ParseRouteMessage(b)
		if err != nil || !ok || n != len(b) || got.Gateway != tt.gw || got.Mask != tt.mask || got.Type != tt.typ || got.Seq != 42 {
			t.Errorf("type %d: parsed %+v n=%d ok=%v err=%v", tt.typ, got, n, ok, err)
		}
	}
	if _, err := (RouteMessage{Dst: netip.MustParseAddr("::"), Mask: -1}).Marshal(); err == nil {
		t.Error("Marshal accepted IPv6")
	}
}

// rtmsg builds a message the way the kernel does, with sockaddrs of the given sa_len.
func rtmsg(typ byte, flags int32, sas ...[]byte) []byte {
	b := make([]byte, SizeofRtMsghdr)
	var addrs uint32
	for i, sa := range sas {
		if sa == nil {
			continue
		}
		addrs |= 1 << i
		p := make([]byte, SASize(int(sa[0])))
		copy(p, sa)
		b = append(b, p...)
	}
	binary.LittleEndian.PutUint16(b, uint16(len(b)))
	b[2], b[3] = RTM_VERSION, typ
	binary.LittleEndian.PutUint32(b[8:], uint32(flags))
	binary.LittleEndian.PutUint32(b[12:], addrs)
	return b
}

func TestParseRouteDump(t *testing.T) {
	in4 := func(a ...byte) []byte {
		return append([]byte{16, AF_INET, 0, 0}, append(a, make([]byte, 12-len(a))...)...)
	}
	link := []byte{54, AF_LINK, 3, 0, 6, 3, 6, 0, 'e', 'm', '0'}
	var dump []byte
	// default via 192.168.1.1, its netmask sent empty (sa_len 0).
	dump = append(dump, rtmsg(RTM_GET, RTF_UP|RTF_GATEWAY|RTF_STATIC, in4(0, 0, 0, 0), in4(192, 168, 1, 1), []byte{0, 0})...)
	// 192.168.1.0/24 on em0, the netmask shortened to sa_len 7 as the radix code does.
	dump = append(dump, rtmsg(RTM_GET, RTF_UP, in4(192, 168, 1, 0), link, []byte{7, AF_INET, 0, 0, 255, 255, 255})...)
	// a host route, no netmask.
	dump = append(dump, rtmsg(RTM_GET, RTF_UP|RTF_HOST, in4(127, 0, 0, 1), link)...)
	// 10.0.0.0/8 with a full netmask.
	dump = append(dump, rtmsg(RTM_GET, RTF_UP|RTF_GATEWAY, in4(10, 0, 0, 0), in4(192, 168, 1, 254), in4(255))...)
	// an IPv6 route is skipped.
	dump = append(dump, rtmsg(RTM_GET, RTF_UP, append([]byte{28, AF_INET6}, make([]byte, 26)...), link)...)
	// a message of another version is skipped by its length.
	other := rtmsg(RTM_GET, RTF_UP, in4(1, 2, 3, 4))
	other[2] = 4
	dump = append(dump, other...)

	got, err := ParseRouteDump(dump)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{
		netip.MustParsePrefix("0.0.0.0/0"),
		netip.MustParsePrefix("192.168.1.0/24"),
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("10.0.0.0/8"),
	}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("route %d = %v, want %v", i, got[i], want[i])
		}
	}

	bad := []struct {
		name string
		b    []byte
	}{
		{"short", []byte{1, 0}},
		{"length past the end", func() []byte {
			b := rtmsg(RTM_GET, 0, in4(1))
			binary.LittleEndian.PutUint16(b, uint16(len(b)+8))
			return b
		}()},
		{"sockaddr past the end", func() []byte {
			b := rtmsg(RTM_GET, 0, in4(1))
			binary.LittleEndian.PutUint32(b[12:], RTA_DST|RTA_GATEWAY)
			return b
		}()},
		{"non-contiguous netmask", rtmsg(RTM_GET, 0, in4(10), nil, in4(255, 0, 255))},
	}
	for _, tt := range bad {
		if _, err := ParseRouteDump(tt.b); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
}

func TestRouteDumpMIB(t *testing.T) {
	if got := RouteDumpMIB(); got != [6]int32{4, 17, 0, 2, 1, 0} {
		t.Errorf("MIB %v", got)
	}
}
