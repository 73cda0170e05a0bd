//go:build linux

package linux

import (
	"errors"
	"fmt"
	"math/bits"
	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capSets holds the five capability sets of one thread as bitmasks (bit n is capability n).
type capSets struct {
	bounding, effective, permitted, inheritable, ambient uint64
}

// CapabilityNames returns every capability name knast knows ("CAP_CHOWN", ...), in kernel number order.
// The running kernel may know fewer; see FinalizeProcess.
func CapabilityNames() []string {
	known := capability.ListKnown()
	names := make([]string, 0, len(known))
	for _, c := range known {
		names = append(names, capName(c))
	}
	return names
}

func capName(c capability.Cap) string {
	return "CAP_" + strings.ToUpper(c.String())
}

// capLookup maps a spec capability name to its number; names are matched exactly, as runc does.
func capLookup(name string) (capability.Cap, bool) {
	for _, c := range capability.ListKnown() {
		if capName(c) == name {
			return c, true
		}
	}
	return 0, false
}

// capParse turns the names of one set into a mask. A name knast does not know is an error; a capability
// above last (the running kernel's highest) is left out, so configs written for newer kernels still run.
func capParse(set string, names []string, last capability.Cap) (uint64, error) {
	var mask uint64
	for _, n := range names {
		c, ok := capLookup(n)
		if !ok {
			return 0, fmt.Errorf("process.capabilities.%s: unknown capability %q", set, n)
		}
		if c > last {
			continue
		}
		mask |= 1 << uint(c)
	}
	return mask, nil
}

func capParseAll(c *specs.LinuxCapabilities, last capability.Cap) (capSets, error) {
	var s capSets
	var err error
	for _, f := range []struct {
		name  string
		names []string
		dst   *uint64
	}{
		{"bounding", c.Bounding, &s.bounding},
		{"effective", c.Effective, &s.effective},
		{"permitted", c.Permitted, &s.permitted},
		{"inheritable", c.Inheritable, &s.inheritable},
		{"ambient", c.Ambient, &s.ambient},
	} {
		if *f.dst, err = capParse(f.name, f.names, last); err != nil {
			return capSets{}, err
		}
	}
	return s, nil
}

// capMaskNames lists the capabilities in mask, for error messages.
func capMaskNames(mask uint64) string {
	var names []string
	for mask != 0 {
		c := capability.Cap(bits.TrailingZeros64(mask))
		mask &^= 1 << uint(c)
		names = append(names, capName(c))
	}
	return strings.Join(names, ", ")
}

// capCheck reports, before anything is changed, what the kernel's capset(2) would refuse with a bare EPERM.
// cur is the thread's state before FinalizeProcess; want.bounding must already be limited to cur.bounding.
// The rules are those of the capset that follows a uid change under PR_SET_KEEPCAPS, where the effective
// set (and so CAP_SETPCAP) is gone: P' ⊆ P, E' ⊆ P', I' ⊆ I ∪ (P ∩ B').
func capCheck(want, cur capSets) error {
	if extra := want.permitted &^ cur.permitted; extra != 0 {
		return fmt.Errorf("process.capabilities.permitted: %s cannot be granted: the runtime does not hold it (missing from the host's bounding set?)", capMaskNames(extra))
	}
	if extra := want.effective &^ want.permitted; extra != 0 {
		return fmt.Errorf("process.capabilities.effective: %s not in the permitted set", capMaskNames(extra))
	}
	if extra := want.inheritable &^ (cur.inheritable | want.bounding); extra != 0 {
		return fmt.Errorf("process.capabilities.inheritable: %s not in the bounding set (or missing from the host's)", capMaskNames(extra))
	}
	if extra := want.inheritable &^ (cur.inheritable | cur.permitted); extra != 0 {
		return fmt.Errorf("process.capabilities.inheritable: %s cannot be granted: the runtime does not hold it", capMaskNames(extra))
	}
	return nil
}

// capRead returns the calling thread's bounding, effective, permitted and inheritable sets.
func capRead(last capability.Cap) (capSets, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return capSets{}, fmt.Errorf("capget: %w", err)
	}
	s := capSets{
		effective:   uint64(data[0].Effective) | uint64(data[1].Effective)<<32,
		permitted:   uint64(data[0].Permitted) | uint64(data[1].Permitted)<<32,
		inheritable: uint64(data[0].Inheritable) | uint64(data[1].Inheritable)<<32,
	}
	for c := capability.Cap(0); c <= last; c++ {
		in, err := unix.PrctlRetInt(unix.PR_CAPBSET_READ, uintptr(c), 0, 0, 0)
		if err != nil {
			return capSets{}, fmt.Errorf("read bounding set (%s): %w", capName(c), err)
		}
		if in == 1 {
			s.bounding |= 1 << uint(c)
		}
	}
	return s, nil
}

// capDropBounding removes every capability not in keep from the thread's bounding set. It needs
// CAP_SETPCAP in the effective set, so it runs before the uid change.
func capDropBounding(keep, cur uint64, last capability.Cap) error {
	for c := capability.Cap(0); c <= last; c++ {
		bit := uint64(1) << uint(c)
		if keep&bit != 0 || cur&bit == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil {
			return fmt.Errorf("drop %s from the bounding set: %w", capName(c), err)
		}
	}
	return nil
}

// capSetThread sets the effective, permitted and inheritable sets of the calling thread.
func capSetThread(s capSets) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	data := [2]unix.CapUserData{
		{Effective: uint32(s.effective), Permitted: uint32(s.permitted), Inheritable: uint32(s.inheritable)},
		{Effective: uint32(s.effective >> 32), Permitted: uint32(s.permitted >> 32), Inheritable: uint32(s.inheritable >> 32)},
	}
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capset (effective %#x, permitted %#x, inheritable %#x): %w", s.effective, s.permitted, s.inheritable, err)
	}
	return nil
}

// capSetAmbient clears the ambient set and raises the capabilities in mask.
func capSetAmbient(mask uint64) error {
	if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0); err != nil {
		// EINVAL: a kernel without ambient capabilities (< 4.3) has nothing to clear.
		if !errors.Is(err, unix.EINVAL) || mask != 0 {
			return fmt.Errorf("clear ambient capabilities: %w", err)
		}
	}
	for m := mask; m != 0; {
		c := bits.TrailingZeros64(m)
		m &^= 1 << uint(c)
		if err := unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(c), 0, 0); err != nil {
			return fmt.Errorf("raise ambient %s: %w", capName(capability.Cap(c)), err)
		}
	}
	return nil
}

// capInEffective reports whether the calling thread has c in its effective set.
func capInEffective(c capability.Cap) (bool, error) {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false, fmt.Errorf("capget: %w", err)
	}
	eff := uint64(data[0].Effective) | uint64(data[1].Effective)<<32
	return eff&(1<<uint(c)) != 0, nil
}
