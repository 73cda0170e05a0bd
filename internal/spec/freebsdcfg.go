package spec

import (
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// freebsdSection checks the "freebsd" section (runtime-spec 1.3). It is plain Go on every OS.
func (v *validator) freebsdSection() {
	fb := v.s.FreeBSD
	if fb == nil {
		return
	}
	for i, d := range fb.Devices {
		f := fmt.Sprintf("freebsd.devices[%d].path", i)
		switch {
		case d.Path == "":
			v.add(f, "must be set")
		case escapesDev(d.Path):
			v.add(f, "%q is not inside /dev", d.Path)
		}
	}
	j := fb.Jail
	if j == nil {
		return
	}
	for _, sh := range []struct {
		field string
		value specs.FreeBSDSharing
	}{
		{"host", j.Host}, {"ip4", j.Ip4}, {"ip6", j.Ip6}, {"vnet", j.Vnet},
		{"sysvmsg", j.SysVMsg}, {"sysvsem", j.SysVSem}, {"sysvshm", j.SysVShm},
	} {
		switch sh.value {
		case "", specs.FreeBSDShareDisable, specs.FreeBSDShareNew, specs.FreeBSDShareInherit:
		default:
			v.add("freebsd.jail."+sh.field, "%q is not one of disable, new, inherit", sh.value)
		}
	}
	if e := j.EnforceStatfs; e != nil && (*e < 0 || *e > 2) {
		v.add("freebsd.jail.enforceStatfs", "%d is outside [0, 2]", *e)
	}
}

// escapesDev reports whether a path meant relative to /dev climbs out of it.
func escapesDev(p string) bool {
	depth := 0
	for part := range strings.SplitSeq(strings.TrimPrefix(p, "/dev/"), "/") {
		switch part {
		case "", ".":
		case "..":
			depth--
			if depth < 0 {
				return true
			}
		default:
			depth++
		}
	}
	return false
}
