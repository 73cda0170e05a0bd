package bsdnet

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func TestPfrTable(t *testing.T) {
	tb, err := NewPfrTable("knast", NetsTable, PFR_TFLAG_PERSIST)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]byte, SizeofPfrTable)
	copy(want, "knast")
	copy(want[1024:], "knast_nets")
	want[1056] = PFR_TFLAG_PERSIST
	if !bytes.Equal(tb[:], want) {
		t.Errorf("pfr_table differs at %d", firstDiff(tb[:], want))
	}
	if tb.Anchor() != "knast" || tb.Name() != NetsTable || tb.Flags() != PFR_TFLAG_PERSIST {
		t.Errorf("decoded %q %q %#x", tb.Anchor(), tb.Name(), tb.Flags())
	}
	for _, bad := range []struct{ anchor, name string }{
		{"knast", ""},
		{"knast", strings.Repeat("t", 32)},
		{"/knast", "t"},
		{strings.Repeat("a", 1024), "t"},
	} {
		if _, err := NewPfrTable(bad.anchor, bad.name, 0); err == nil {
			t.Errorf("NewPfrTable(%q, %q) accepted", bad.anchor, bad.name)
		}
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestPfrAddrs(t *testing.T) {
	tests := []struct {
		in   string
		want []byte
	}{
		{"10.88.0.0/24", []byte{10, 88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AF_INET, 24, 0, 0}},
		// host bits are cleared: the kernel refuses them (pfr_validate_addr).
		{"10.88.0.77/16", []byte{10, 88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AF_INET, 16, 0, 0}},
		{"0.0.0.0/0", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AF_INET, 0, 0, 0}},
		{"192.0.2.9/32", []byte{192, 0, 2, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AF_INET, 32, 0, 0}},
		{"fd00:1::/64", []byte{0xfd, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, AF_INET6, 64, 0, 0}},
	}
	var all []netip.Prefix
	var wantAll []byte
	for _, tt := range tests {
		p := netip.MustParsePrefix(tt.in)
		got, err := PfrAddrs([]netip.Prefix{p})
		if err != nil || !bytes.Equal(got, tt.want) {
			t.Errorf("PfrAddrs(%s) = % x, %v\nwant % x", tt.in, got, err, tt.want)
		}
		all = append(all, p)
		wantAll = append(wantAll, tt.want...)
	}
	got, err := PfrAddrs(all)
	if err != nil || !bytes.Equal(got, wantAll) || len(got) != len(tests)*SizeofPfrAddr {
		t.Errorf("array of %d: % x", len(all), got)
	}
	if _, err := PfrAddrs([]netip.Prefix{{}}); err == nil {
		t.Error("PfrAddrs accepted an invalid prefix")
	}
}

func TestPfiocTable(t *testing.T) {
	tb, _ := NewPfrTable("knast-1a2b3c4d", "knast_tcp_8080_80", 0)
	io := NewPfiocTable(tb, 0x00000000c0001000, SizeofPfrAddr, 3)
	if !bytes.Equal(io[:SizeofPfrTable], tb[:]) {
		t.Error("pfrio_table differs")
	}
	fields := []struct {
		name string
		off  int
		size int
		want uint64
	}{
		{"pfrio_buffer", 1064, 8, 0xc0001000},
		{"pfrio_esize", 1072, 4, 20},
		{"pfrio_size", 1076, 4, 3},
		{"pfrio_size2", 1080, 4, 0},
		{"pfrio_nadd", 1084, 4, 0},
		{"pfrio_ndel", 1088, 4, 0},
		{"pfrio_nchange", 1092, 4, 0},
		{"pfrio_flags", 1096, 4, 0},
		{"pfrio_ticket", 1100, 4, 0},
	}
	for _, f := range fields {
		var got uint64
		if f.size == 8 {
			got = binary.LittleEndian.Uint64(io[f.off:])
		} else {
			got = uint64(binary.LittleEndian.Uint32(io[f.off:]))
		}
		if got != f.want {
			t.Errorf("%s at %d = %d, want %d", f.name, f.off, got, f.want)
		}
	}
	// What the kernel writes back.
	binary.LittleEndian.PutUint32(io[1076:], 5)
	binary.LittleEndian.PutUint32(io[1084:], 2)
	binary.LittleEndian.PutUint32(io[1088:], 1)
	binary.LittleEndian.PutUint32(io[1092:], 4)
	if io.Size() != 5 || io.Added() != 2 || io.Deleted() != 1 || io.Changed() != 4 {
		t.Errorf("read back size %d added %d deleted %d changed %d", io.Size(), io.Added(), io.Deleted(), io.Changed())
	}
}

func TestParsePfrTables(t *testing.T) {
	a, _ := NewPfrTable("knast", "knast_nets", PFR_TFLAG_ACTIVE|PFR_TFLAG_REFERENCED|PFR_TFLAG_PERSIST)
	b, _ := NewPfrTable("knast", "knast_udp_53_53", PFR_TFLAG_REFERENCED)
	buf := append(append([]byte{}, a[:]...), b[:]...)
	got, err := ParsePfrTables(buf, 2)
	if err != nil || len(got) != 2 || got[0].Name() != "knast_nets" || got[1].Name() != "knast_udp_53_53" ||
		got[0].Flags() != 0x15 || got[1].Flags() != PFR_TFLAG_REFERENCED {
		t.Errorf("ParsePfrTables = %v, %v", got, err)
	}
	if _, err := ParsePfrTables(buf, 3); err == nil {
		t.Error("ParsePfrTables read past the buffer")
	}
}

func TestPlanTables(t *testing.T) {
	pfx := netip.MustParsePrefix
	addr := netip.MustParseAddr
	web := Slot{Proto: "tcp", HostPort: 8080, ContainerPort: 80}
	dns := Slot{Proto: "udp", HostPort: 5353, ContainerPort: 53}
	tests := []struct {
		name    string
		masq    []netip.Prefix
		pubs    []Publish
		want    []Table
		wantErr string
	}{
		{name: "nothing: the nets table is still emptied", want: []Table{{Name: NetsTable}}},
		{
			name: "subnets masked, sorted, deduplicated",
			masq: []netip.Prefix{pfx("10.89.0.0/24"), pfx("10.88.0.9/24"), pfx("10.89.0.0/24")},
			want: []Table{{Name: NetsTable, Entries: []netip.Prefix{pfx("10.88.0.0/24"), pfx("10.89.0.0/24")}}},
		},
		{
			name: "published ports, any host address and one host address",
			masq: []netip.Prefix{pfx("10.88.0.0/24")},
			pubs: []Publish{
				{Slot: web, HostIP: addr("192.0.2.10"), Container: addr("10.88.0.2")},
				{Slot: dns, Container: addr("10.88.0.3")},
				{Slot: web, HostIP: addr("192.0.2.11"), Container: addr("10.88.0.2")},
			},
			want: []Table{
				{Name: NetsTable, Entries: []netip.Prefix{pfx("10.88.0.0/24")}},
				{Name: "knast_tcp_8080_80_h", Entries: []netip.Prefix{pfx("192.0.2.10/32"), pfx("192.0.2.11/32")}},
				{Name: "knast_tcp_8080_80", Entries: []netip.Prefix{pfx("10.88.0.2/32")}},
				{Name: "knast_udp_5353_53_h", Entries: []netip.Prefix{pfx("0.0.0.0/0")}},
				{Name: "knast_udp_5353_53", Entries: []netip.Prefix{pfx("10.88.0.3/32")}},
			},
		},
		{
			name: "one slot, two containers",
			pubs: []Publish{
				{Slot: web, HostIP: addr("192.0.2.10"), Container: addr("10.88.0.2")},
				{Slot: web, HostIP: addr("192.0.2.11"), Container: addr("10.88.0.3")},
			},
			wantErr: "redirects to one container",
		},
		{name: "bad protocol", pubs: []Publish{{Slot: Slot{Proto: "sctp", HostPort: 1, ContainerPort: 1}, Container: addr("10.0.0.1")}}, wantErr: "protocol"},
		{name: "port 0", pubs: []Publish{{Slot: Slot{Proto: "tcp", HostPort: 0, ContainerPort: 1}, Container: addr("10.0.0.1")}}, wantErr: "port 0"},
		{name: "IPv6 container", pubs: []Publish{{Slot: web, Container: addr("fd00::2")}}, wantErr: "not IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PlanTables(tt.masq, tt.pubs)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
			for _, tb := range got {
				if !Owned(tb.Name) || len(tb.Name) >= PFTableNameSize {
					t.Errorf("table %q: not owned or too long", tb.Name)
				}
			}
		})
	}
	if Owned("blocklist") {
		t.Error("Owned(blocklist)")
	}
	if dst, target := (Slot{Proto: "udp", HostPort: 65535, ContainerPort: 65535}).Tables(); len(dst) >= PFTableNameSize || len(target) >= PFTableNameSize {
		t.Errorf("longest slot names %q %q do not fit PF_TABLE_NAME_SIZE", dst, target)
	}
}

func TestPFAnchor(t *testing.T) {
	got, err := PFAnchor(AnchorConfig{ExtIf: "em0", Slots: []Slot{
		{Proto: "udp", HostPort: 5353, ContainerPort: 53},
		{Proto: "tcp", HostPort: 8080, ContainerPort: 80},
		{Proto: "tcp", HostPort: 8080, ContainerPort: 80},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `# knast's pf anchor "knast". knast fills its tables; reload this file when the slots change.
table <knast_nets> persist
table <knast_tcp_8080_80_h> persist
table <knast_tcp_8080_80> persist
table <knast_udp_5353_53_h> persist
table <knast_udp_5353_53> persist
nat on em0 inet from <knast_nets> to ! <knast_nets> -> (em0:0)
rdr pass on em0 inet proto tcp from any to <knast_tcp_8080_80_h> port 8080 -> <knast_tcp_8080_80> port 80 round-robin
rdr pass on em0 inet proto udp from any to <knast_udp_5353_53_h> port 5353 -> <knast_udp_5353_53> port 53 round-robin
pass quick inet from <knast_nets> to any keep state
`
	if got != want {
		t.Errorf("anchor:\n%s\nwant:\n%s", got, want)
	}
	bad := []AnchorConfig{
		{ExtIf: ""},
		{ExtIf: "em0", Name: "kn ast"},
		{ExtIf: "em0", Slots: []Slot{{Proto: "icmp", HostPort: 1, ContainerPort: 1}}},
	}
	for _, c := range bad {
		if _, err := PFAnchor(c); err == nil {
			t.Errorf("PFAnchor(%+v) accepted", c)
		}
	}
}
