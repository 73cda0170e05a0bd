package bsdnet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
)

// Routing socket constants (net/route.h).
const (
	RTM_VERSION = 5
	RTM_ADD     = 0x1
	RTM_DELETE  = 0x2
	RTM_CHANGE  = 0x3
	RTM_GET     = 0x4

	RTF_UP      = 0x1
	RTF_GATEWAY = 0x2
	RTF_HOST    = 0x4
	RTF_STATIC  = 0x800

	RTA_DST     = 0x1
	RTA_GATEWAY = 0x2
	RTA_NETMASK = 0x4

	rtaxMax = 8 // RTAX_MAX: sockaddrs follow the header in RTA_ bit order
)

// Offsets into struct rt_msghdr.
const (
	rtmMsglen  = 0
	rtmVersion = 2
	rtmType    = 3
	rtmIndex   = 4
	rtmFlags   = 8
	rtmAddrs   = 12
	rtmPid     = 16
	rtmSeq     = 20
	rtmErrno   = 24
)

// SASize is SA_SIZE (net/route.h): a sockaddr's length in a routing message, sa_len rounded up to a
// multiple of sizeof(long), and sizeof(long) for an empty one.
func SASize(saLen int) int {
	if saLen == 0 {
		return sizeofLong
	}
	return 1 + ((saLen - 1) | (sizeofLong - 1))
}

// RouteMessage is an rt_msghdr with its IPv4 destination, gateway and netmask.
type RouteMessage struct {
	Type  byte
	Flags int32
	Index uint16
	Pid   int32
	Seq   int32
	Errno int32
	Dst   netip.Addr
	// Gateway is invalid when the gateway is not an IPv4 address (a link-level one for a connected
	// route).
	Gateway netip.Addr
	// Mask is the netmask's prefix length, -1 when the message has none (a host route).
	Mask int
}

// DefaultRoute is the message that adds (RTM_ADD), changes (RTM_CHANGE), removes (RTM_DELETE) or reads
// (RTM_GET) the IPv4 default route via gw.
func DefaultRoute(typ byte, gw netip.Addr, seq int32) RouteMessage {
	return RouteMessage{
		Type: typ, Flags: RTF_UP | RTF_GATEWAY | RTF_STATIC, Seq: seq,
		Dst: netip.IPv4Unspecified(), Gateway: gw, Mask: 0,
	}
}

// Marshal encodes m as route(4) expects on a PF_ROUTE socket: the header, then RTA_DST, RTA_GATEWAY (when
// valid) and RTA_NETMASK (when Mask >= 0) as sockaddr_in, each padded to SA_SIZE.
func (m RouteMessage) Marshal() ([]byte, error) {
	if !m.Dst.Is4() {
		return nil, fmt.Errorf("route destination %v: want IPv4", m.Dst)
	}
	if m.Gateway.IsValid() && !m.Gateway.Is4() {
		return nil, fmt.Errorf("route gateway %v: want IPv4", m.Gateway)
	}
	if m.Mask > 32 {
		return nil, fmt.Errorf("route netmask /%d: want at most /32", m.Mask)
	}
	addrs := int32(RTA_DST)
	body := []netip.Addr{m.Dst}
	if m.Gateway.IsValid() {
		addrs |= RTA_GATEWAY
		body = append(body, m.Gateway)
	}
	if m.Mask >= 0 {
		addrs |= RTA_NETMASK
		body = append(body, mask4(m.Mask))
	}
	b := make([]byte, SizeofRtMsghdr, SizeofRtMsghdr+len(body)*SASize(SizeofSockaddrIn))
	for _, a := range body {
		sa := sockaddrIn(a)
		b = append(b, sa[:]...)
		b = append(b, make([]byte, SASize(SizeofSockaddrIn)-SizeofSockaddrIn)...)
	}
	binary.LittleEndian.PutUint16(b[rtmMsglen:], uint16(len(b)))
	b[rtmVersion] = RTM_VERSION
	b[rtmType] = m.Type
	binary.LittleEndian.PutUint16(b[rtmIndex:], m.Index)
	binary.LittleEndian.PutUint32(b[rtmFlags:], uint32(m.Flags))
	binary.LittleEndian.PutUint32(b[rtmAddrs:], uint32(addrs))
	binary.LittleEndian.PutUint32(b[rtmPid:], uint32(m.Pid))
	binary.LittleEndian.PutUint32(b[rtmSeq:], uint32(m.Seq))
	return b, nil
}

// ParseRouteMessage decodes the first message in b and returns it with its length (rtm_msglen). A
// message of another version, or not about IPv4, comes back with ok false and its length, so a reader
// skips it.
func ParseRouteMessage(b []byte) (m RouteMessage, n int, ok bool, err error) {
	if len(b) < 4 {
		return m, 0, false, fmt.Errorf("routing message: %d bytes, want at least 4", len(b))
	}
	n = int(binary.LittleEndian.Uint16(b[rtmMsglen:]))
	if n < 4 || n > len(b) {
		return m, 0, false, fmt.Errorf("routing message: length %d in a buffer of %d", n, len(b))
	}
	if b[rtmVersion] != RTM_VERSION || n < SizeofRtMsghdr {
		return m, n, false, nil
	}
	msg := b[:n]
	m = RouteMessage{
		Type:  msg[rtmType],
		Index: binary.LittleEndian.Uint16(msg[rtmIndex:]),
		Flags: int32(binary.LittleEndian.Uint32(msg[rtmFlags:])),
		Pid:   int32(binary.LittleEndian.Uint32(msg[rtmPid:])),
		Seq:   int32(binary.LittleEndian.Uint32(msg[rtmSeq:])),
		Errno: int32(binary.LittleEndian.Uint32(msg[rtmErrno:])),
		Mask:  -1,
	}
	addrs := binary.LittleEndian.Uint32(msg[rtmAddrs:])
	rest := msg[SizeofRtMsghdr:]
	for i := range rtaxMax {
		if addrs&(1<<i) == 0 {
			continue
		}
		if len(rest) == 0 {
			return m, n, false, fmt.Errorf("routing message: sockaddr %d missing", i)
		}
		saLen := int(rest[0])
		size := SASize(saLen)
		if size > len(rest) {
			return m, n, false, fmt.Errorf("routing message: sockaddr %d of %d bytes past the end", i, size)
		}
		sa := rest[:saLen]
		switch 1 << i {
		case RTA_DST:
			if saLen < 2 || sa[1] != AF_INET {
				return m, n, false, nil
			}
			if m.Dst, err = parseSockaddrIn(sa); err != nil {
				return m, n, false, fmt.Errorf("routing message destination: %w", err)
			}
		case RTA_GATEWAY:
			if saLen >= 8 && sa[1] == AF_INET {
				m.Gateway = netip.AddrFrom4([4]byte(sa[4:8]))
			}
		case RTA_NETMASK:
			if m.Mask, err = maskLen(sa); err != nil {
				return m, n, false, err
			}
		}
		rest = rest[size:]
	}
	return m, n, m.Dst.IsValid(), nil
}

// maskLen reads a netmask sockaddr, which the kernel may shorten to its last non-zero byte (sa_len < 8)
// or send empty (the default route).
func maskLen(sa []byte) (int, error) {
	var m [4]byte
	if len(sa) > sockaddrInAddrOff {
		copy(m[:], sa[sockaddrInAddrOff:])
	}
	v := binary.BigEndian.Uint32(m[:])
	ones := bits.LeadingZeros32(^v)
	if ones < 32 && v<<ones != 0 {
		return 0, fmt.Errorf("routing message: netmask %v is not contiguous", netip.AddrFrom4(m))
	}
	return ones, nil
}

// Prefix is the destination of a route message: Dst/Mask, or Dst/32 for a host route.
func (m RouteMessage) Prefix() netip.Prefix {
	bits := m.Mask
	if bits < 0 || m.Flags&RTF_HOST != 0 {
		bits = 32
	}
	return netip.PrefixFrom(m.Dst, bits).Masked()
}

// ParseRouteDump decodes a sysctl NET_RT_DUMP buffer (CTL_NET, PF_ROUTE, 0, AF_INET, NET_RT_DUMP, 0)
// into the IPv4 destinations it routes, skipping messages it does not understand.
func ParseRouteDump(b []byte) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for len(b) > 0 {
		m, n, ok, err := ParseRouteMessage(b)
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return nil, errors.New("routing dump: empty message")
		}
		if ok {
			out = append(out, m.Prefix())
		}
		b = b[n:]
	}
	return out, nil
}

// RouteDumpMIB is the sysctl MIB of the IPv4 routing table dump of fib 0: CTL_NET, PF_ROUTE, protocol 0,
// AF_INET, NET_RT_DUMP, flags 0 (sys/sys/socket.h).
func RouteDumpMIB() [6]int32 { return [6]int32{4, 17, 0, AF_INET, 1, 0} }
