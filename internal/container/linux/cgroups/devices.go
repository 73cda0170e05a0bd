package cgroups

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// devRule is one device cgroup rule in the kernel's terms.
type devRule struct {
	typ    byte  // 'a' (all), 'c' or 'b'
	major  int64 // -1: any
	minor  int64 // -1: any
	access string
	allow  bool
}

// deviceRule validates and normalises a spec rule: an empty type is "a", an empty access is "rwm"
// (as runc and crun read it), "u" (unbuffered char) is "c".
func deviceRule(d specs.LinuxDeviceCgroup) (devRule, error) {
	r := devRule{major: -1, minor: -1, allow: d.Allow}
	switch d.Type {
	case "", "a":
		r.typ = 'a'
	case "c", "u":
		r.typ = 'c'
	case "b":
		r.typ = 'b'
	default:
		return r, fmt.Errorf("type %q: want a, b or c", d.Type)
	}
	if d.Major != nil {
		if *d.Major < 0 || *d.Major > 0xffffffff {
			return r, fmt.Errorf("major %d is out of range", *d.Major)
		}
		r.major = *d.Major
	}
	if d.Minor != nil {
		if *d.Minor < 0 || *d.Minor > 0xffffffff {
			return r, fmt.Errorf("minor %d is out of range", *d.Minor)
		}
		r.minor = *d.Minor
	}
	acc := d.Access
	if acc == "" {
		acc = "rwm"
	}
	for _, c := range acc {
		if c != 'r' && c != 'w' && c != 'm' {
			return r, fmt.Errorf("access %q: want letters from rwm", d.Access)
		}
	}
	r.access = normAccess(acc)
	return r, nil
}

func normAccess(s string) string {
	var b strings.Builder
	for _, c := range "rwm" {
		if strings.ContainsRune(s, c) {
			b.WriteRune(c)
		}
	}
	return b.String()
}

func devNumStr(n int64) string {
	if n < 0 {
		return "*"
	}
	return strconv.FormatInt(n, 10)
}

// String is the rule as devices.allow/devices.deny take it, e.g. "c 1:3 rwm".
func (r devRule) String() string {
	if r.typ == 'a' {
		return "a"
	}
	return fmt.Sprintf("%c %s:%s %s", r.typ, devNumStr(r.major), devNumStr(r.minor), r.access)
}

func i64(v int64) *int64 { return &v }

// DefaultDevices are the rules runc appends after the config's own: mknod of any device, and
// access to /dev/null, random, full, tty, zero, urandom, the pty slaves, ptmx and /dev/net/tun.
// Create applies them after linux.resources.devices.
func DefaultDevices() []specs.LinuxDeviceCgroup {
	c := func(major, minor int64, access string) specs.LinuxDeviceCgroup {
		d := specs.LinuxDeviceCgroup{Allow: true, Type: "c", Major: i64(major), Access: access}
		if minor >= 0 {
			d.Minor = i64(minor)
		}
		return d
	}
	return []specs.LinuxDeviceCgroup{
		{Allow: true, Type: "c", Access: "m"},
		{Allow: true, Type: "b", Access: "m"},
		c(1, 3, "rwm"),    // null
		c(1, 8, "rwm"),    // random
		c(1, 7, "rwm"),    // full
		c(5, 0, "rwm"),    // tty
		c(1, 5, "rwm"),    // zero
		c(1, 9, "rwm"),    // urandom
		c(136, -1, "rwm"), // pts
		c(5, 2, "rwm"),    // ptmx
		c(10, 200, "rwm"), // net/tun
	}
}

type devKey struct {
	typ          byte
	major, minor int64
}

// emulateDevices replays rules the way the v1 devices controller applies writes to devices.allow
// and devices.deny of a fresh cgroup after "deny a" (runc's emulator does the same for its eBPF
// filter): an "a" rule resets to allow-all or deny-all; other rules add or remove access on an
// exception that matches type, major and minor exactly. It returns the default and the exceptions,
// each with the opposite action, sorted.
func emulateDevices(rules []devRule) (defaultAllow bool, exceptions []devRule) {
	ex := map[devKey]string{}
	for _, r := range rules {
		if r.typ == 'a' {
			defaultAllow = r.allow
			clear(ex)
			continue
		}
		k := devKey{r.typ, r.major, r.minor}
		if r.allow != defaultAllow {
			ex[k] = normAccess(ex[k] + r.access)
			continue
		}
		left := ex[k]
		for _, c := range r.access {
			left = strings.ReplaceAll(left, string(c), "")
		}
		if left == "" {
			delete(ex, k)
		} else {
			ex[k] = left
		}
	}
	for k, acc := range ex {
		exceptions = append(exceptions, devRule{typ: k.typ, major: k.major, minor: k.minor, access: acc, allow: !defaultAllow})
	}
	slices.SortFunc(exceptions, func(a, b devRule) int {
		return cmp.Or(cmp.Compare(a.typ, b.typ), cmp.Compare(a.major, b.major), cmp.Compare(a.minor, b.minor))
	})
	return defaultAllow, exceptions
}

// deviceRules validates and converts a spec rule list.
func deviceRules(ds []specs.LinuxDeviceCgroup) ([]devRule, error) {
	var out []devRule
	var errs []error
	for i, d := range ds {
		r, err := deviceRule(d)
		if err != nil {
			errs = append(errs, fmt.Errorf("linux.resources.devices[%d]: %w", i, err))
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}
