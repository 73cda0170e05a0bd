package bsdnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
)

// Address families and interface flags (sys/sys/socket.h, net/if.h).
const (
	AF_INET  = 2
	AF_LINK  = 18
	AF_INET6 = 28
	IFF_UP   = 0x1
)

// Bridge commands carried by SIOCSDRVSPEC (net/if_bridgevar.h).
const (
	BRDGADD     = 0 // add a member (struct ifbreq)
	BRDGDEL     = 1 // delete a member (struct ifbreq)
	BRDGGIFFLGS = 2 // get a member's flags (struct ifbreq, SIOCGDRVSPEC); ENOENT when not a member
)

// ifr_ifru, the union after ifr_name, starts here (net/if.h struct ifreq).
const ifruOff = IFNAMSIZ

// IfName returns name as a NUL-padded char[IFNAMSIZ], refusing what the kernel would truncate.
func IfName(name string) ([IFNAMSIZ]byte, error) {
	var b [IFNAMSIZ]byte
	if name == "" {
		return b, errors.New("empty interface name")
	}
	if len(name) >= IFNAMSIZ {
		return b, fmt.Errorf("interface name %q: longer than %d bytes", name, IFNAMSIZ-1)
	}
	if strings.IndexByte(name, 0) >= 0 || strings.ContainsAny(name, "/ \t\n") {
		return b, fmt.Errorf("interface name %q: invalid character", name)
	}
	copy(b[:], name)
	return b, nil
}

// cString reads a NUL-terminated string from a fixed-size field.
func cString(b []byte) string {
	if i := strings.IndexByte(string(b), 0); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// Ifreq is a struct ifreq: the interface name and one member of the ifr_ifru union, which every
// accessor below reads or writes at offset 16.
type Ifreq [SizeofIfreq]byte

// NewIfreq returns a zeroed ifreq naming name.
func NewIfreq(name string) (*Ifreq, error) {
	n, err := IfName(name)
	if err != nil {
		return nil, err
	}
	var r Ifreq
	copy(r[:], n[:])
	return &r, nil
}

// Name is ifr_name; SIOCIFCREATE2 writes the created interface's name there.
func (r *Ifreq) Name() string { return cString(r[:IFNAMSIZ]) }

// SetFlags sets ifr_flags (low 16 bits) and ifr_flagshigh (high 16 bits).
func (r *Ifreq) SetFlags(f uint32) {
	binary.LittleEndian.PutUint16(r[ifruOff:], uint16(f))
	binary.LittleEndian.PutUint16(r[ifruOff+2:], uint16(f>>16))
}

// Flags reads ifr_flags and ifr_flagshigh back into one value.
func (r *Ifreq) Flags() uint32 {
	return uint32(binary.LittleEndian.Uint16(r[ifruOff:])) | uint32(binary.LittleEndian.Uint16(r[ifruOff+2:]))<<16
}

// SetInt sets an int member: ifr_mtu (SIOCSIFMTU) or ifr_jid (SIOCSIFVNET).
func (r *Ifreq) SetInt(v int32) { binary.LittleEndian.PutUint32(r[ifruOff:], uint32(v)) }

// Int reads an int member (ifr_mtu after SIOCGIFMTU).
func (r *Ifreq) Int() int32 { return int32(binary.LittleEndian.Uint32(r[ifruOff:])) }

// SetData sets ifr_data, a user address (SIOCSIFNAME: the new name; SIOCIFCREATE2: parameters, 0 for
// none).
func (r *Ifreq) SetData(addr uint64) { binary.LittleEndian.PutUint64(r[ifruOff:], addr) }

// SetLinkAddr fills ifr_addr for SIOCSIFLLADDR the way ifconfig(8) does: sa_len is the address length
// (6), sa_family AF_LINK and sa_data the address itself; the kernel hands sa_data and sa_len to
// if_setlladdr.
func (r *Ifreq) SetLinkAddr(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("MAC %v: want 6 bytes, have %d", mac, len(mac))
	}
	clear(r[ifruOff : ifruOff+SizeofSockaddr])
	r[ifruOff] = byte(len(mac))
	r[ifruOff+1] = AF_LINK
	copy(r[ifruOff+2:], mac)
	return nil
}

// Addr reads ifr_addr as a sockaddr_in (SIOCGIFADDR).
func (r *Ifreq) Addr() (netip.Addr, error) {
	return parseSockaddrIn(r[ifruOff : ifruOff+SizeofSockaddrIn])
}

// EpairPeer names the other end of an epair: SIOCIFCREATE2 on "epair" returns the a-end, "epairNa", and
// the kernel made "epairNb" with it.
func EpairPeer(aEnd string) (string, error) {
	if !strings.HasPrefix(aEnd, "epair") || !strings.HasSuffix(aEnd, "a") || len(aEnd) < len("epair0a") {
		return "", fmt.Errorf("%q is not the a-end of an epair", aEnd)
	}
	return aEnd[:len(aEnd)-1] + "b", nil
}

// sockaddrIn encodes a struct sockaddr_in (netinet/in.h): sin_len, sin_family, sin_port (0), sin_addr,
// sin_zero.
func sockaddrIn(a netip.Addr) [SizeofSockaddrIn]byte {
	var b [SizeofSockaddrIn]byte
	b[0] = SizeofSockaddrIn
	b[1] = AF_INET
	v := a.As4()
	copy(b[sockaddrInAddrOff:], v[:])
	return b
}

func parseSockaddrIn(b []byte) (netip.Addr, error) {
	if len(b) < 8 || b[1] != AF_INET || b[0] < 8 {
		return netip.Addr{}, fmt.Errorf("not a sockaddr_in (len %d, family %d)", b[0], b[1])
	}
	return netip.AddrFrom4([4]byte(b[4:8])), nil
}

// mask4 is the IPv4 netmask of bits.
func mask4(bits int) netip.Addr {
	m := ^uint32(0) << (32 - bits)
	if bits == 0 {
		m = 0
	}
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], m)
	return netip.AddrFrom4(b)
}

// broadcast4 is the last address of p.
func broadcast4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(b[:]) | ^(^uint32(0) << (32 - p.Bits()))
	if p.Bits() == 0 {
		v = ^uint32(0)
	}
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// InAliasreq encodes a struct in_aliasreq (netinet/in_var.h; struct ifaliasreq in net/if.h has the same
// layout) for SIOCAIFADDR: ifra_name, ifra_addr, ifra_broadaddr (the subnet's broadcast) and ifra_mask as
// sockaddr_in, ifra_vhid 0.
func InAliasreq(ifname string, addr netip.Prefix) ([SizeofInAliasreq]byte, error) {
	var b [SizeofInAliasreq]byte
	if !addr.IsValid() || !addr.Addr().Is4() {
		return b, fmt.Errorf("address %v: want an IPv4 prefix", addr)
	}
	n, err := IfName(ifname)
	if err != nil {
		return b, err
	}
	copy(b[:], n[:])
	a := sockaddrIn(addr.Addr())
	brd := sockaddrIn(broadcast4(addr))
	m := sockaddrIn(mask4(addr.Bits()))
	copy(b[16:], a[:])
	copy(b[32:], brd[:])
	copy(b[48:], m[:])
	return b, nil
}

// Ifdrv encodes a struct ifdrv (net/if.h) for SIOCSDRVSPEC/SIOCGDRVSPEC: the bridge's name, the command
// (BRDGADD...), the argument's length and its user address.
func Ifdrv(bridge string, cmd uint64, length uint64, data uint64) ([SizeofIfdrv]byte, error) {
	var b [SizeofIfdrv]byte
	n, err := IfName(bridge)
	if err != nil {
		return b, err
	}
	copy(b[:], n[:])
	binary.LittleEndian.PutUint64(b[16:], cmd)
	binary.LittleEndian.PutUint64(b[24:], length)
	binary.LittleEndian.PutUint64(b[32:], data)
	return b, nil
}

// Ifbreq encodes a struct ifbreq (net/if_bridgevar.h) naming a member for BRDGADD/BRDGDEL; the kernel
// ignores the other fields for these commands, and refuses an ifd_len other than its size.
func Ifbreq(member string) ([SizeofIfbreq]byte, error) {
	var b [SizeofIfbreq]byte
	n, err := IfName(member)
	if err != nil {
		return b, err
	}
	copy(b[:], n[:])
	return b, nil
}
