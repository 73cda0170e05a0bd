package freebsd

import (
	"encoding/binary"
	"fmt"
	"path"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ioctl request encoding, <sys/ioccom.h>: direction in the top 3 bits, the argument's size in the 13
// bits below the top byte, then the group letter and the number.
const (
	iocParmMask = 1<<13 - 1  // IOCPARM_MASK
	iocVoid     = 0x20000000 // IOC_VOID
	iocOut      = 0x40000000 // IOC_OUT
	iocIn       = 0x80000000 // IOC_IN
	iocInOut    = iocIn | iocOut
)

// IOC is _IOC(inout, group, num, len).
func IOC(inout uint32, group byte, num uint8, size int) uint32 {
	return inout | uint32(size&iocParmMask)<<16 | uint32(group)<<8 | uint32(num)
}

// IOW is _IOW(group, num, type) for a type of size bytes.
func IOW(group byte, num uint8, size int) uint32 { return IOC(iocIn, group, num, size) }

// IOWR is _IOWR(group, num, type) for a type of size bytes.
func IOWR(group byte, num uint8, size int) uint32 { return IOC(iocInOut, group, num, size) }

// struct devfs_rule, <fs/devfs/devfs.h>: no pointers, so one layout on every architecture.
const (
	DevfsRuleSize   = 236        // sizeof(struct devfs_rule)
	devfsMagic      = 0xdb0a087a // DEVFS_MAGIC
	devfsMaxPtrnLen = 200        // DEVFS_MAXPTRNLEN

	drcPathPtrn = 0x002 // DRC_PATHPTRN
	draBActs    = 0x001 // DRA_BACTS
	draUID      = 0x002 // DRA_UID
	draGID      = 0x004 // DRA_GID
	draMode     = 0x008 // DRA_MODE
	drbHide     = 0x001 // DRB_HIDE
	drbUnhide   = 0x002 // DRB_UNHIDE
)

// The devfs rule ioctls, issued on a descriptor of the devfs mount point.
var (
	DevfsIORAdd   = IOWR('D', 0, DevfsRuleSize) // DEVFSIO_RADD: add a rule to a ruleset
	DevfsIORDel   = IOW('D', 1, 4)              // DEVFSIO_RDEL: delete a rule by devfs_rid
	DevfsIORApply = IOW('D', 2, DevfsRuleSize)  // DEVFSIO_RAPPLY: apply a rule to this mount only
	DevfsIOSUse   = IOW('D', 10, 2)             // DEVFSIO_SUSE: make a ruleset the mount's (devfs_rsnum)
	DevfsIOSApply = IOW('D', 11, 2)             // DEVFSIO_SAPPLY: apply a ruleset to this mount once
)

// DevfsRule is struct devfs_rule.
type DevfsRule struct {
	ID      uint32 // devfs_rid: ruleset << 16 | rule number
	Pattern string // dr_pathptrn, a glob relative to /dev
	Hide    bool
	Unhide  bool
	UID     *uint32
	GID     *uint32
	Mode    *uint16 // mode_t is 16 bits on FreeBSD
}

// RuleID is mkrid(ruleset, rule).
func RuleID(ruleset, rule uint16) uint32 { return uint32(rule) | uint32(ruleset)<<16 }

// Marshal is the rule's 236 bytes as the kernel reads them (host byte order).
func (r DevfsRule) Marshal() ([]byte, error) {
	if len(r.Pattern) >= devfsMaxPtrnLen {
		return nil, fmt.Errorf("devfs rule pattern %q: longer than %d bytes", r.Pattern, devfsMaxPtrnLen-1)
	}
	if err := checkCString("devfs rule pattern", r.Pattern); err != nil {
		return nil, err
	}
	ne := binary.NativeEndian
	b := make([]byte, DevfsRuleSize)
	ne.PutUint32(b[0:], devfsMagic)
	ne.PutUint32(b[4:], r.ID)
	var icond, iacts, bacts uint32
	if r.Pattern != "" {
		icond |= drcPathPtrn
		copy(b[16:16+devfsMaxPtrnLen], r.Pattern)
	}
	if r.Hide {
		iacts, bacts = iacts|draBActs, bacts|drbHide
	}
	if r.Unhide {
		iacts, bacts = iacts|draBActs, bacts|drbUnhide
	}
	if r.UID != nil {
		iacts |= draUID
		ne.PutUint32(b[224:], *r.UID)
	}
	if r.GID != nil {
		iacts |= draGID
		ne.PutUint32(b[228:], *r.GID)
	}
	if r.Mode != nil {
		iacts |= draMode
		ne.PutUint16(b[232:], *r.Mode)
	}
	ne.PutUint32(b[8:], icond) // dr_icond
	// b[12:16] dr_dswflags stays 0: no DRC_DSWFLAGS condition.
	ne.PutUint32(b[216:], iacts) // dr_iacts
	ne.PutUint32(b[220:], bacts) // dr_bacts
	// b[234:236] dr_incset stays 0: no DRA_INCSET action.
	return b, nil
}

// DeviceRules are the rules that expose the config's freebsd.devices in a devfs mount whose ruleset
// hides them: unhide the path, and set its mode when given. They are applied to the mount (RAPPLY),
// not added to a ruleset, so nothing global outlives the container.
func DeviceRules(devs []specs.FreeBSDDevice) ([]DevfsRule, error) {
	var out []DevfsRule
	for i, d := range devs {
		rel := strings.TrimPrefix(d.Path, "/dev/")
		p := strings.TrimPrefix(path.Clean("/"+rel), "/")
		if p == "" || climbs(rel) {
			return nil, fmt.Errorf("freebsd.devices[%d].path: %q is not a device under /dev", i, d.Path)
		}
		r := DevfsRule{Pattern: p, Unhide: true}
		if d.Mode != nil {
			// JSON carries the mode as a plain number (448 is 0700): bits above 07777 are no mode.
			v := uint32(*d.Mode)
			if v > 0o7777 {
				return nil, fmt.Errorf("freebsd.devices[%d].mode: %#o is not a file mode", i, v)
			}
			mode := uint16(v)
			r.Mode = &mode
		}
		out = append(out, r)
	}
	return out, nil
}

// climbs reports whether a relative path goes above its start at some point.
func climbs(p string) bool {
	depth := 0
	for part := range strings.SplitSeq(p, "/") {
		switch part {
		case "", ".":
		case "..":
			if depth--; depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}
