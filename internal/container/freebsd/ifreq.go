package freebsd

import (
	"encoding/binary"
	"fmt"
)

// struct ifreq, <net/if.h>: the name, then a 16-byte union; ifru_jid is its first int.
const (
	IfreqSize  = 32
	ifNameSize = 16 // IFNAMSIZ
)

// SIOCSIFVNET moves an interface into a vnet jail: _IOWR('i', 90, struct ifreq), <sys/sockio.h>.
var SIOCSIFVNET = IOWR('i', 90, IfreqSize)

// IfreqJid is the struct ifreq of SIOCSIFVNET: interface name and the jid to move it to.
func IfreqJid(name string, jid int) ([]byte, error) {
	if name == "" || len(name) >= ifNameSize {
		return nil, fmt.Errorf("interface name %q: must be 1 to %d bytes", name, ifNameSize-1)
	}
	if err := checkCString("interface name", name); err != nil {
		return nil, err
	}
	b := make([]byte, IfreqSize)
	copy(b, name)
	binary.NativeEndian.PutUint32(b[ifNameSize:], uint32(int32(jid)))
	return b, nil
}
