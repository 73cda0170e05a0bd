package network

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// natChain is one base chain of knast's table and its rules.
type natChain struct {
	name     string
	typ      nftables.ChainType
	hook     *nftables.ChainHook
	priority *nftables.ChainPriority
	rules    [][]expr.Any
}

// nftChains translates a plan into knast's base chains (pure: table-tested). In nft's words:
//
//	prerouting  nat dstnat:  fib daddr type local meta l4proto tcp th dport 8080 dnat to 10.90.0.2:80
//	output      nat -100:    the same, for the host's own connections (127.0.0.1 included)
//	postrouting nat srcnat:  ip saddr S ip daddr != S ip daddr != 224.0.0.0/4 masquerade   (ipMasq)
//	                         ct status dnat ip saddr S ip daddr S masquerade               (hairpin)
//	                         oifname BR ct status dnat ip saddr 127.0.0.0/8 masquerade     (localhost)
//	forward     filter 0:    iifname BR accept; oifname BR ct state established,related accept;
//	                         oifname BR ct status dnat accept
func nftChains(p natPlan) []natChain {
	var dnat [][]expr.Any
	for _, r := range p.dnat {
		dnat = append(dnat, dnatExprs(r))
	}
	var post, fwd [][]expr.Any
	for _, s := range p.masq {
		post = append(post, cat(
			ipMatch(12, s, expr.CmpOpEq),
			ipMatch(16, s, expr.CmpOpNeq),
			ipMatch(16, netip.MustParsePrefix("224.0.0.0/4"), expr.CmpOpNeq),
			[]expr.Any{&expr.Masq{}},
		))
	}
	for _, n := range p.nets {
		post = append(post, cat(ctStatusDNAT(), ipMatch(12, n.subnet, expr.CmpOpEq), ipMatch(16, n.subnet, expr.CmpOpEq), []expr.Any{&expr.Masq{}}))
		post = append(post, cat(ifname(expr.MetaKeyOIFNAME, n.bridge), ctStatusDNAT(),
			ipMatch(12, netip.MustParsePrefix("127.0.0.0/8"), expr.CmpOpEq), []expr.Any{&expr.Masq{}}))
		fwd = append(fwd,
			cat(ifname(expr.MetaKeyIIFNAME, n.bridge), accept()),
			cat(ifname(expr.MetaKeyOIFNAME, n.bridge), ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), accept()),
			cat(ifname(expr.MetaKeyOIFNAME, n.bridge), ctStatusDNAT(), accept()),
		)
	}
	return []natChain{
		{"prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, nftables.ChainPriorityNATDest, dnat},
		{"output", nftables.ChainTypeNAT, nftables.ChainHookOutput, nftables.ChainPriorityNATDest, dnat},
		{"postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, nftables.ChainPriorityNATSource, post},
		{"forward", nftables.ChainTypeFilter, nftables.ChainHookForward, nftables.ChainPriorityFilter, fwd},
	}
}

// syncNAT replaces knast's table as a whole in one netlink batch (one nftables transaction): adding the
// table first makes the delete valid when it is missing, and the kernel applies add-delete-add
// atomically, so packets see the old rules or the new ones, never none. No networks: no table.
func (d *linuxDriver) syncNAT(_ context.Context, nets []Network, atts []Attachment) error {
	return d.applyNAT(planNAT(nets, atts), true)
}

// syncNATIfChanged is syncNAT that leaves the table alone when the kernel's copy already carries the
// plan's fingerprint: most attaches and detaches (no published ports) change no rule, and a rebuild
// costs a transaction that unregisters and re-registers four hooks.
func (d *linuxDriver) syncNATIfChanged(_ context.Context, nets []Network, atts []Attachment) error {
	return d.applyNAT(planNAT(nets, atts), false)
}

// planComment starts the comment of the first postrouting rule; the plan's fingerprint follows.
const planComment = "knast plan "

// natRulesVersion is part of every fingerprint: bump it when nftChains renders a plan differently, so
// a table an older knast built is rebuilt.
const natRulesVersion = 1

// planFingerprint identifies what knast's table holds for p (pure: table-tested).
func planFingerprint(p natPlan) string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d\n", natRulesVersion)
	for _, s := range p.masq {
		fmt.Fprintf(h, "masq %v\n", s)
	}
	for _, n := range p.nets {
		fmt.Fprintf(h, "net %s %v\n", n.bridge, n.subnet)
	}
	for _, r := range p.dnat {
		fmt.Fprintf(h, "dnat %v %s %d %v\n", r.hostIP, r.proto, r.hostPort, r.dest)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// forwardFingerprint identifies the forward rules of p, those copied into a foreign FORWARD chain.
func forwardFingerprint(p natPlan) string {
	h := sha256.New()
	fmt.Fprintf(h, "v%d forward\n", natRulesVersion)
	for _, n := range p.nets {
		fmt.Fprintf(h, "%s\n", n.bridge)
	}
	return hex.EncodeToString(h.Sum(nil)[:12])
}

// nftComment encodes s as nft(8) stores a rule's comment (libnftnl's NFTNL_UDATA_RULE_COMMENT TLV), so
// `nft list` shows it.
func nftComment(s string) []byte {
	b := make([]byte, 0, len(s)+3)
	b = append(b, 0, byte(len(s)+1))
	b = append(b, s...)
	return append(b, 0)
}

func (d *linuxDriver) applyNAT(p natPlan, force bool) error {
	c, err := nftables.New(nftables.AsLasting())
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	t := &nftables.Table{Name: d.natTable(), Family: nftables.TableFamilyIPv4}
	chains := nftChains(p)
	mark := nftComment(planComment + planFingerprint(p))
	if force || !tableCurrent(c, t, chains, mark) {
		c.AddTable(t)
		c.DelTable(t)
		if !p.empty() {
			c.AddTable(t)
			accept := nftables.ChainPolicyAccept
			for _, ch := range chains {
				chain := c.AddChain(&nftables.Chain{Name: ch.name, Table: t, Type: ch.typ, Hooknum: ch.hook, Priority: ch.priority, Policy: &accept})
				for i, r := range ch.rules {
					rule := &nftables.Rule{Table: t, Chain: chain, Exprs: r}
					if ch.name == "postrouting" && i == 0 {
						rule.UserData = mark
					}
					c.AddRule(rule)
				}
			}
		}
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables: replace table ip %s: %w", t.Name, err)
		}
	}
	if err := d.syncForeignForward(c, p); err != nil {
		// Rules in another tool's table are a courtesy: knast's own table is in place.
		d.log.Warn("accept rules in iptables' FORWARD chain", "err", err)
	}
	return nil
}

// tableCurrent reports whether the kernel's postrouting chain of t starts with the rule that carries
// mark and holds as many rules as chains asks for (one dump of one chain). A missing table, a table
// flushed by hand or one built for another plan is not current; an empty plan never is (its table must go).
func tableCurrent(c *nftables.Conn, t *nftables.Table, chains []natChain, mark []byte) bool {
	for _, ch := range chains {
		if ch.name != "postrouting" || len(ch.rules) == 0 {
			continue
		}
		rules, err := c.GetRules(t, &nftables.Chain{Name: ch.name, Table: t})
		return err == nil && len(rules) == len(ch.rules) && bytes.Equal(rules[0].UserData, mark)
	}
	return false
}

// syncForeignForward covers a host whose iptables (nft backend) FORWARD chain drops by default, as Docker
// sets it: an accept in knast's own table does not stop a drop in another table's chain on the same hook,
// so the bridges' forward rules are also put at the head of `ip filter FORWARD`, marked with knast's table
// name (and their fingerprint) in their user data and replaced as a whole when they differ from what p
// asks for. A chain that accepts needs none.
func (d *linuxDriver) syncForeignForward(c *nftables.Conn, p natPlan) error {
	t := &nftables.Table{Name: "filter", Family: nftables.TableFamilyIPv4}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return err
	}
	var fwd *nftables.Chain
	for _, ch := range chains {
		if ch.Table.Name == "filter" && ch.Name == "FORWARD" {
			fwd = ch
		}
	}
	if fwd == nil {
		return nil
	}
	rules, err := c.GetRules(t, fwd)
	if err != nil {
		return err
	}
	// A bare mark is what knast wrote before the fingerprint was added: still knast's.
	mark := "knast:" + d.natTable()
	want := []byte(mark + " " + forwardFingerprint(p))
	var wantRules [][]expr.Any
	if fwd.Policy != nil && *fwd.Policy == nftables.ChainPolicyDrop {
		for _, ch := range nftChains(p) {
			if ch.name == "forward" {
				wantRules = ch.rules
			}
		}
	}
	var ours []*nftables.Rule
	current := true
	for i, r := range rules {
		if string(r.UserData) != mark && !strings.HasPrefix(string(r.UserData), mark+" ") {
			continue
		}
		ours = append(ours, r)
		// Current: exactly the wanted rules, all with today's fingerprint, all at the head.
		current = current && i == len(ours)-1 && bytes.Equal(r.UserData, want)
	}
	if current && len(ours) == len(wantRules) {
		return nil
	}
	for _, r := range ours {
		if err := c.DelRule(r); err != nil {
			return err
		}
	}
	for _, r := range wantRules {
		c.InsertRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: r, UserData: want})
	}
	return c.Flush()
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// ipMatch compares the IPv4 address at offset (12 source, 16 destination) with prefix p.
func ipMatch(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	p = p.Masked()
	addr := p.Addr().As4()
	load := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}
	if p.Bits() == 32 {
		return []expr.Any{load, &expr.Cmp{Op: op, Register: 1, Data: addr[:]}}
	}
	mask := netipMask(p.Bits())
	return []expr.Any{
		load,
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: 1, Data: addr[:]},
	}
}

func netipMask(bits int) []byte {
	m := ^uint32(0) << (32 - bits)
	return []byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}
}

// ifname matches an interface name; the kernel compares IFNAMSIZ bytes, zero-padded.
func ifname(key expr.MetaKey, name string) []expr.Any {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return []expr.Any{&expr.Meta{Key: key, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: b}}
}

// ipsDstNAT is IPS_DST_NAT of linux/netfilter/nf_conntrack_common.h (x/sys/unix lacks it).
const ipsDstNAT = 1 << 5

func ctStatusDNAT() []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{0, 0, 0, 0}},
	}
}

func accept() []expr.Any { return []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}} }

// dnatExprs is one published port: the destination (any local address, or the given one), protocol and
// port, then dnat to the container's address and port.
func dnatExprs(r dnatRule) []expr.Any {
	var dst []expr.Any
	if r.hostIP.IsValid() {
		dst = ipMatch(16, netip.PrefixFrom(r.hostIP, 32), expr.CmpOpEq)
	} else {
		dst = []expr.Any{
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		}
	}
	proto := byte(unix.IPPROTO_TCP)
	if r.proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	to := r.dest.Addr().As4()
	return cat(dst, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(r.hostPort)},
		&expr.Immediate{Register: 1, Data: to[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(r.dest.Port())},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	})
}
