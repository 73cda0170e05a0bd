package freebsd

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
)

// Param is one name/value pair of a jail_set(2) or nmount(2) iovec list: two iovecs, the NUL-terminated
// name and the value. A nil Value is a boolean parameter set by its name alone.
type Param struct {
	Name  string
	Value []byte
}

// Str is a string parameter; the kernel wants its value NUL-terminated.
func Str(name, value string) Param { return Param{Name: name, Value: cString(value)} }

// Int is an int parameter: 4 bytes in the host's byte order (little-endian on every Go FreeBSD port).
func Int(name string, v int32) Param {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint32(b, uint32(v))
	return Param{Name: name, Value: b}
}

// Bool is a boolean parameter: its name when on, the "no" form of its name when off.
func Bool(name string, on bool) Param {
	if on {
		return Param{Name: name}
	}
	return Param{Name: NoName(name)}
}

// NoName is the "off" form of a boolean parameter: "no" goes before the last dotted component, as
// jail(8) and the kernel's vfs_flagopt spell it (persist -> nopersist, allow.mount -> allow.nomount).
func NoName(name string) string {
	i := strings.LastIndexByte(name, '.')
	return name[:i+1] + "no" + name[i+1:]
}

// IP4Addrs packs IPv4 addresses as the kernel's ip4.addr wants them: an array of struct in_addr, each 4
// bytes in network order.
func IP4Addrs(name string, addrs []string) (Param, error) {
	b := make([]byte, 0, 4*len(addrs))
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is4() {
			return Param{}, fmt.Errorf("%q is not an IPv4 address", a)
		}
		v := ip.As4()
		b = append(b, v[:]...)
	}
	return Param{Name: name, Value: b}, nil
}

// IP6Addrs packs IPv6 addresses as an array of struct in6_addr (16 bytes each).
func IP6Addrs(name string, addrs []string) (Param, error) {
	b := make([]byte, 0, 16*len(addrs))
	for _, a := range addrs {
		ip, err := netip.ParseAddr(a)
		if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
			return Param{}, fmt.Errorf("%q is not an IPv6 address", a)
		}
		v := ip.As16()
		b = append(b, v[:]...)
	}
	return Param{Name: name, Value: b}, nil
}

// Encode flattens params into the byte strings of an iovec array: name, value, name, value... A boolean's
// value is nil (iov_base NULL, iov_len 0).
func Encode(params []Param) [][]byte {
	out := make([][]byte, 0, 2*len(params))
	for _, p := range params {
		out = append(out, cString(p.Name), p.Value)
	}
	return out
}

func cString(s string) []byte { return append([]byte(s), 0) }

// checkCString refuses strings the kernel would cut at a NUL.
func checkCString(field, s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("%s: contains a NUL byte", field)
	}
	return nil
}
