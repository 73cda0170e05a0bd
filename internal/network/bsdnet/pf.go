package bsdnet

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// pf table flags (net/pfvar.h PFR_TFLAG_*).
const (
	PFR_TFLAG_PERSIST    = 0x01
	PFR_TFLAG_CONST      = 0x02
	PFR_TFLAG_ACTIVE     = 0x04
	PFR_TFLAG_INACTIVE   = 0x08
	PFR_TFLAG_REFERENCED = 0x10
)

// Offsets into struct pfr_table and struct pfioc_table (net/pfvar.h).
const (
	pfrtName      = MAXPATHLEN
	pfrtFlags     = MAXPATHLEN + PFTableNameSize
	pfrioBuffer   = SizeofPfrTable
	pfrioEsize    = pfrioBuffer + 8
	pfrioSize     = pfrioEsize + 4
	pfrioSize2    = pfrioSize + 4
	pfrioNadd     = pfrioSize2 + 4
	pfrioNdel     = pfrioNadd + 4
	pfrioNchange  = pfrioNdel + 4
	pfrioFlags    = pfrioNchange + 4
	pfrioTicket   = pfrioFlags + 4
	pfraAF        = 16
	pfraNet       = 17
	pfraNot       = 18
	pfraFback     = 19
	pfTableNamePf = "knast_"
)

// PfrTable is a struct pfr_table: the anchor path, the table name and its flags.
type PfrTable [SizeofPfrTable]byte

// NewPfrTable encodes a table identity; the kernel refuses names that are empty, too long or followed by
// anything but NULs, and flags outside PERSIST|CONST for table creation (0 for address operations).
func NewPfrTable(anchor, name string, flags uint32) (*PfrTable, error) {
	if name == "" || len(name) >= PFTableNameSize || strings.IndexByte(name, 0) >= 0 {
		return nil, fmt.Errorf("pf table name %q: want 1 to %d bytes", name, PFTableNameSize-1)
	}
	if len(anchor) >= MAXPATHLEN || strings.IndexByte(anchor, 0) >= 0 || strings.HasPrefix(anchor, "/") {
		return nil, fmt.Errorf("pf anchor %q: invalid path", anchor)
	}
	var t PfrTable
	copy(t[:], anchor)
	copy(t[pfrtName:], name)
	binary.LittleEndian.PutUint32(t[pfrtFlags:], flags)
	return &t, nil
}

// Anchor is pfrt_anchor.
func (t *PfrTable) Anchor() string { return cString(t[:MAXPATHLEN]) }

// Name is pfrt_name.
func (t *PfrTable) Name() string { return cString(t[pfrtName : pfrtName+PFTableNameSize]) }

// Flags is pfrt_flags.
func (t *PfrTable) Flags() uint32 { return binary.LittleEndian.Uint32(t[pfrtFlags:]) }

// ParsePfrTables decodes n struct pfr_table from a DIOCRGETTABLES buffer.
func ParsePfrTables(b []byte, n int) ([]PfrTable, error) {
	if n < 0 || n*SizeofPfrTable > len(b) {
		return nil, fmt.Errorf("pf tables: %d entries in %d bytes", n, len(b))
	}
	out := make([]PfrTable, n)
	for i := range out {
		copy(out[i][:], b[i*SizeofPfrTable:])
	}
	return out, nil
}

// PfrAddrs encodes prefixes as an array of struct pfr_addr: the address in a 16-byte union, pfra_af,
// pfra_net (the prefix length), pfra_not and pfra_fback 0. The kernel refuses host bits past the prefix,
// so every prefix is masked.
func PfrAddrs(prefixes []netip.Prefix) ([]byte, error) {
	b := make([]byte, len(prefixes)*SizeofPfrAddr)
	for i, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("pf table entry %d: invalid prefix", i)
		}
		p = p.Masked()
		e := b[i*SizeofPfrAddr:]
		if p.Addr().Is4() {
			a := p.Addr().As4()
			copy(e, a[:])
			e[pfraAF] = AF_INET
		} else {
			a := p.Addr().As16()
			copy(e, a[:])
			e[pfraAF] = AF_INET6
		}
		e[pfraNet] = byte(p.Bits())
	}
	return b, nil
}

// PfiocTable is a struct pfioc_table, the argument of every DIOCR* ioctl.
type PfiocTable [SizeofPfiocTable]byte

// NewPfiocTable encodes a request on table: buffer is the user address of size elements of esize bytes
// (SizeofPfrAddr for address ioctls, SizeofPfrTable for table ioctls; 0 and 0 for DIOCRCLRADDRS).
func NewPfiocTable(table *PfrTable, buffer uint64, esize, size int) *PfiocTable {
	var io PfiocTable
	copy(io[:], table[:])
	binary.LittleEndian.PutUint64(io[pfrioBuffer:], buffer)
	binary.LittleEndian.PutUint32(io[pfrioEsize:], uint32(esize))
	binary.LittleEndian.PutUint32(io[pfrioSize:], uint32(size))
	return &io
}

func (io *PfiocTable) get(off int) int { return int(int32(binary.LittleEndian.Uint32(io[off:]))) }

// Size is pfrio_size: after DIOCRGETTABLES, the number of tables (written or needed).
func (io *PfiocTable) Size() int { return io.get(pfrioSize) }

// Added is pfrio_nadd.
func (io *PfiocTable) Added() int { return io.get(pfrioNadd) }

// Deleted is pfrio_ndel.
func (io *PfiocTable) Deleted() int { return io.get(pfrioNdel) }

// Changed is pfrio_nchange.
func (io *PfiocTable) Changed() int { return io.get(pfrioNchange) }

// NetsTable holds the subnets whose traffic leaving them is masqueraded.
const NetsTable = "knast_nets"

// Slot is one published port the pf anchor has a rule for: traffic to HostPort/Proto on the external
// interface is redirected to ContainerPort of the address in the slot's target table.
type Slot struct {
	Proto         string // "tcp" or "udp"
	HostPort      uint16
	ContainerPort uint16
}

func (s Slot) valid() error {
	if s.Proto != "tcp" && s.Proto != "udp" {
		return fmt.Errorf("published port %d: protocol %q, want tcp or udp", s.HostPort, s.Proto)
	}
	if s.HostPort == 0 || s.ContainerPort == 0 {
		return fmt.Errorf("published port %s/%d:%d: port 0", s.Proto, s.HostPort, s.ContainerPort)
	}
	return nil
}

// String is the slot as -p writes it: "8080:80/tcp".
func (s Slot) String() string { return fmt.Sprintf("%d:%d/%s", s.HostPort, s.ContainerPort, s.Proto) }

// Tables names the slot's two tables: dst holds the host addresses it listens on (0.0.0.0/0 for all),
// target the container's address.
func (s Slot) Tables() (dst, target string) {
	target = fmt.Sprintf("%s%s_%d_%d", pfTableNamePf, s.Proto, s.HostPort, s.ContainerPort)
	return target + "_h", target
}

// Rule is the anchor's rdr rule for the slot on extIf.
func (s Slot) Rule(extIf string) string {
	dst, target := s.Tables()
	return fmt.Sprintf("rdr pass on %s inet proto %s from any to <%s> port %d -> <%s> port %d round-robin",
		extIf, s.Proto, dst, s.HostPort, target, s.ContainerPort)
}

// Publish is one published port of one attachment.
type Publish struct {
	Slot
	HostIP    netip.Addr // zero: every host address
	Container netip.Addr
}

// Table is the whole content of one of knast's pf tables.
type Table struct {
	Name    string
	Entries []netip.Prefix
}

// PlanTables decides the content of knast's tables: NetsTable with the masqueraded subnets, and for each
// published slot its listening addresses and its container. A slot redirects to one container: two
// attachments publishing the same host port, container port and protocol on different host addresses
// cannot be told apart by a table-driven rule, and are refused.
func PlanTables(masq []netip.Prefix, pubs []Publish) ([]Table, error) {
	nets := Table{Name: NetsTable}
	for _, p := range masq {
		if !p.IsValid() {
			return nil, errors.New("masqueraded subnet: invalid prefix")
		}
		nets.Entries = append(nets.Entries, p.Masked())
	}
	slices.SortFunc(nets.Entries, comparePrefix)
	nets.Entries = slices.Compact(nets.Entries)
	out := []Table{nets}
	bySlot := map[Slot]*[2]Table{}
	var order []Slot
	for _, p := range pubs {
		if err := p.valid(); err != nil {
			return nil, err
		}
		if !p.Container.Is4() {
			return nil, fmt.Errorf("published port %v: container address %v is not IPv4", p.Slot, p.Container)
		}
		if p.HostIP.IsValid() && !p.HostIP.Is4() {
			return nil, fmt.Errorf("published port %v: host address %v is not IPv4", p.Slot, p.HostIP)
		}
		host := netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if p.HostIP.IsValid() && !p.HostIP.IsUnspecified() {
			host = netip.PrefixFrom(p.HostIP, 32)
		}
		target := netip.PrefixFrom(p.Container, 32)
		t, ok := bySlot[p.Slot]
		if !ok {
			dst, tgt := p.Tables()
			t = &[2]Table{{Name: dst}, {Name: tgt, Entries: []netip.Prefix{target}}}
			bySlot[p.Slot] = t
			order = append(order, p.Slot)
		} else if t[1].Entries[0] != target {
			return nil, fmt.Errorf("published port %v: both %v and %v ask for it; pf's slot for it redirects to one container",
				p.Slot, t[1].Entries[0].Addr(), p.Container)
		}
		if !slices.Contains(t[0].Entries, host) {
			t[0].Entries = append(t[0].Entries, host)
		}
	}
	slices.SortFunc(order, func(a, b Slot) int {
		return cmp.Or(strings.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort), cmp.Compare(a.ContainerPort, b.ContainerPort))
	})
	for _, s := range order {
		t := bySlot[s]
		slices.SortFunc(t[0].Entries, comparePrefix)
		out = append(out, t[0], t[1])
	}
	return out, nil
}

func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}

// Owned reports whether a table in knast's anchor is one knast fills (and so empties when the plan no
// longer holds it).
func Owned(name string) bool { return strings.HasPrefix(name, pfTableNamePf) }

// AnchorConfig describes the pf anchor the administrator loads.
type AnchorConfig struct {
	Name  string // the anchor, "knast" for the default storage directory
	ExtIf string // the interface traffic leaves by, e.g. "em0"
	Slots []Slot // the published ports to redirect
}

// PFAnchor is the ruleset of knast's anchor. knast never loads rules (that would need pfctl or pf's
// rule ioctls, whose layouts change between releases); it only fills the tables these rules name, so the
// administrator loads this text once, and again when the list of publishable ports changes:
//
//	# /etc/pf.conf
//	nat-anchor "knast"
//	rdr-anchor "knast"
//	anchor "knast"
//	load anchor "knast" from "/usr/local/etc/knast/pf.conf"
//
// Limits, stated here and in the README: a port can be published only when its slot (protocol, host port,
// container port) has a rule in the anchor; published ports answer on ExtIf, not on the host's loopback
// nor to containers calling the host's address (no hairpin NAT); a slot redirects to one container.
func PFAnchor(c AnchorConfig) (string, error) {
	if c.Name == "" {
		c.Name = "knast"
	}
	if _, err := IfName(c.ExtIf); err != nil {
		return "", fmt.Errorf("pf anchor: external interface: %w", err)
	}
	if strings.ContainsAny(c.Name, " \t\n\"") {
		return "", fmt.Errorf("pf anchor name %q: invalid", c.Name)
	}
	slots := slices.Clone(c.Slots)
	for _, s := range slots {
		if err := s.valid(); err != nil {
			return "", err
		}
	}
	slices.SortFunc(slots, func(a, b Slot) int {
		return cmp.Or(strings.Compare(a.Proto, b.Proto), cmp.Compare(a.HostPort, b.HostPort), cmp.Compare(a.ContainerPort, b.ContainerPort))
	})
	slots = slices.Compact(slots)
	var b strings.Builder
	fmt.Fprintf(&b, "# knast's pf anchor %q. knast fills its tables; reload this file when the slots change.\n", c.Name)
	fmt.Fprintf(&b, "table <%s> persist\n", NetsTable)
	for _, s := range slots {
		dst, target := s.Tables()
		fmt.Fprintf(&b, "table <%s> persist\ntable <%s> persist\n", dst, target)
	}
	fmt.Fprintf(&b, "nat on %s inet from <%s> to ! <%s> -> (%s:0)\n", c.ExtIf, NetsTable, NetsTable, c.ExtIf)
	for _, s := range slots {
		b.WriteString(s.Rule(c.ExtIf))
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "pass quick inet from <%s> to any keep state\n", NetsTable)
	return b.String(), nil
}
