package freebsd

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// jail_set(2)/jail_get(2) flags, <sys/jail.h>.
const (
	JailCreate = 0x01 // JAIL_CREATE
	JailUpdate = 0x02 // JAIL_UPDATE
	JailAttach = 0x04 // JAIL_ATTACH
	JailDying  = 0x08 // JAIL_DYING: jail_get also finds a jail that is being removed
)

// Values of the "jailsys" parameters (host, ip4, ip6, vnet, sysv*, linux), <sys/jail.h>.
const (
	JailSysDisable = 0 // JAIL_SYS_DISABLE
	JailSysNew     = 1 // JAIL_SYS_NEW
	JailSysInherit = 2 // JAIL_SYS_INHERIT
)

// Annotations for the jail parameters the runtime-spec leaves to the runtime ("-" in config-freebsd.md).
const (
	AnnotationSecurelevel    = "io.github.knast.freebsd.securelevel"
	AnnotationDevfsRuleset   = "io.github.knast.freebsd.devfs-ruleset"
	AnnotationChildrenMax    = "io.github.knast.freebsd.children-max"
	AnnotationLinuxOSRelease = "io.github.knast.freebsd.linux-osrelease"
	// AnnotationImageOS is image-spec's key (spec.AnnotationOS): "linux" makes a Linux-ABI jail.
	AnnotationImageOS = "org.opencontainers.image.os"
)

// DefaultDevfsRuleset is devfsrules_jail from /etc/defaults/devfs.rules: the devices a jail needs.
const DefaultDevfsRuleset = 4

// JailName is the jail's name for container id, without the parent prefix. The runtime-spec wants the
// container id, but the kernel reads a name of digits as a jid and a dot as a parent separator: those
// ids get a stable name derived from a hash instead.
func JailName(id string) string {
	if id != "" && !strings.Contains(id, ".") && strings.Trim(id, "0123456789") != "" {
		return id
	}
	sum := sha256.Sum256([]byte(id))
	return "knast-" + hex.EncodeToString(sum[:8])
}

// FullJailName is the name the kernel knows the container's jail by: under freebsd.jail.parent when set.
func FullJailName(id string, s *specs.Spec) string {
	if s != nil && s.FreeBSD != nil && s.FreeBSD.Jail != nil && s.FreeBSD.Jail.Parent != "" {
		return s.FreeBSD.Jail.Parent + "." + JailName(id)
	}
	return JailName(id)
}

// LinuxABI reports whether the config runs a Linux image: FromImage records the image's OS.
func LinuxABI(s *specs.Spec) bool { return s.Annotations[AnnotationImageOS] == "linux" }

// DevfsRuleset is the ruleset of the container's devfs mounts and its devfs_ruleset parameter.
func DevfsRuleset(s *specs.Spec) (int, error) {
	return annotationInt(s, AnnotationDevfsRuleset, DefaultDevfsRuleset, 0, 65535)
}

// JailParams is the jail_set(2) parameter list that creates the jail of container id, rooted at rootfs,
// from the config's hostname, domainname and freebsd.jail section. The jail persists without processes
// until jail_remove. Defaults: enforce_statfs 2 (1 when mounts are allowed), devfs ruleset 4, no child
// jails, allow.* and the network left to the kernel's defaults unless the config says otherwise.
func JailParams(id, rootfs string, s *specs.Spec) ([]Param, error) {
	name := FullJailName(id, s)
	for _, f := range []struct{ field, v string }{{"jail name", name}, {"root.path", rootfs}, {"hostname", s.Hostname}, {"domainname", s.Domainname}} {
		if err := checkCString(f.field, f.v); err != nil {
			return nil, err
		}
	}
	p := []Param{Str("name", name), Str("path", rootfs), Bool("persist", true)}
	var j specs.FreeBSDJail
	if s.FreeBSD != nil && s.FreeBSD.Jail != nil {
		j = *s.FreeBSD.Jail
	}
	if j.Interface != "" {
		return nil, fmt.Errorf("freebsd.jail.interface: adding address aliases to a host interface is %w by knast: put the addresses on the interface first, or use vnet", errors.ErrUnsupported)
	}

	// Host names.
	switch j.Host {
	case "", specs.FreeBSDShareNew:
		if j.Host == specs.FreeBSDShareNew {
			p = append(p, Int("host", JailSysNew))
		}
		if s.Hostname != "" {
			p = append(p, Str("host.hostname", s.Hostname))
		}
		if s.Domainname != "" {
			p = append(p, Str("host.domainname", s.Domainname))
		}
	case specs.FreeBSDShareInherit:
		if s.Hostname != "" || s.Domainname != "" {
			return nil, errors.New("freebsd.jail.host: \"inherit\" shares the host's names: hostname and domainname must not be set")
		}
		p = append(p, Int("host", JailSysInherit))
	default:
		return nil, fmt.Errorf("freebsd.jail.host: %q: only \"new\" or \"inherit\"", j.Host)
	}

	// Network.
	if j.Vnet != "" {
		v, err := jailSys("freebsd.jail.vnet", j.Vnet, false)
		if err != nil {
			return nil, err
		}
		p = append(p, Int("vnet", v))
	}
	for _, ip := range []struct {
		name  string
		share specs.FreeBSDSharing
		addrs []string
		pack  func(string, []string) (Param, error)
	}{{"ip4", j.Ip4, j.Ip4Addr, IP4Addrs}, {"ip6", j.Ip6, j.Ip6Addr, IP6Addrs}} {
		field := "freebsd.jail." + ip.name
		if ip.share != "" {
			v, err := jailSys(field, ip.share, true)
			if err != nil {
				return nil, err
			}
			if v != JailSysNew && len(ip.addrs) > 0 {
				return nil, fmt.Errorf("%s: %q conflicts with %sAddr", field, ip.share, ip.name)
			}
			p = append(p, Int(ip.name, v))
		}
		if len(ip.addrs) > 0 {
			a, err := ip.pack(ip.name+".addr", ip.addrs)
			if err != nil {
				return nil, fmt.Errorf("%sAddr: %w", field, err)
			}
			p = append(p, a)
		}
	}

	// System V IPC.
	for _, sv := range []struct {
		name  string
		share specs.FreeBSDSharing
	}{{"sysvmsg", j.SysVMsg}, {"sysvsem", j.SysVSem}, {"sysvshm", j.SysVShm}} {
		if sv.share == "" {
			continue
		}
		v, err := jailSys("freebsd.jail."+sv.name, sv.share, true)
		if err != nil {
			return nil, err
		}
		p = append(p, Int(sv.name, v))
	}

	// Restrictions.
	mounts := j.Allow != nil && len(j.Allow.Mount) > 0
	statfs := 2
	if mounts {
		statfs = 1 // jail(8): mounting in a jail needs enforce_statfs below 2
	}
	if j.EnforceStatfs != nil {
		statfs = *j.EnforceStatfs
		if statfs < 0 || statfs > 2 {
			return nil, fmt.Errorf("freebsd.jail.enforceStatfs: %d is outside [0, 2]", statfs)
		}
	}
	p = append(p, Int("enforce_statfs", int32(statfs)))
	if a := j.Allow; a != nil {
		p = append(p,
			Bool("allow.set_hostname", a.SetHostname),
			Bool("allow.raw_sockets", a.RawSockets),
			Bool("allow.chflags", a.Chflags),
			Bool("allow.quotas", a.Quotas),
			Bool("allow.socket_af", a.SocketAf),
			Bool("allow.mlock", a.Mlock),
			Bool("allow.reserved_ports", a.ReservedPorts),
		)
		// The spec's default for suser is on, and a Go bool cannot tell false from absent: only an
		// explicit true is passed, and the kernel's default (on, unless the parent disables it) stays.
		if a.Suser {
			p = append(p, Bool("allow.suser", true))
		}
		p = append(p, Bool("allow.mount", mounts))
		for _, fs := range a.Mount {
			if fs == "" || strings.ContainsAny(fs, ".\x00") {
				return nil, fmt.Errorf("freebsd.jail.allow.mount: %q is not a file system type", fs)
			}
			p = append(p, Bool("allow.mount."+fs, true))
		}
	}
	ruleset, err := DevfsRuleset(s)
	if err != nil {
		return nil, err
	}
	p = append(p, Int("devfs_ruleset", int32(ruleset)))
	children, err := annotationInt(s, AnnotationChildrenMax, 0, 0, 1<<31-1)
	if err != nil {
		return nil, err
	}
	p = append(p, Int("children.max", int32(children)))
	if _, ok := s.Annotations[AnnotationSecurelevel]; ok {
		level, err := annotationInt(s, AnnotationSecurelevel, -1, -1, 3)
		if err != nil {
			return nil, err
		}
		p = append(p, Int("securelevel", int32(level)))
	}

	// A Linux image gets its own Linux ABI identity (linux64.ko's jail parameters).
	if LinuxABI(s) {
		p = append(p, Int("linux", JailSysNew), Str("linux.osname", "Linux"))
		if rel := s.Annotations[AnnotationLinuxOSRelease]; rel != "" {
			if err := checkCString(AnnotationLinuxOSRelease, rel); err != nil {
				return nil, err
			}
			p = append(p, Str("linux.osrelease", rel))
		}
	}
	return p, nil
}

// JailGetParams is the jail_get(2) parameter list that looks a jail up by name; jail_get returns its jid.
func JailGetParams(name string) []Param { return []Param{Str("name", name)} }

// jailSys maps a sharing value to a jailsys parameter value; "disable" is valid only where the kernel
// has it (ip4, ip6, sysv*).
func jailSys(field string, v specs.FreeBSDSharing, disable bool) (int32, error) {
	switch v {
	case specs.FreeBSDShareNew:
		return JailSysNew, nil
	case specs.FreeBSDShareInherit:
		return JailSysInherit, nil
	case specs.FreeBSDShareDisable:
		if disable {
			return JailSysDisable, nil
		}
		return 0, fmt.Errorf("%s: \"disable\" is not possible, only \"new\" or \"inherit\"", field)
	}
	return 0, fmt.Errorf("%s: %q is not one of disable, new, inherit", field, v)
}

// annotationInt reads an integer annotation, def when absent.
func annotationInt(s *specs.Spec, key string, def, lo, hi int) (int, error) {
	v, ok := s.Annotations[key]
	if !ok {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < lo || n > hi {
		return 0, fmt.Errorf("annotations[%q]: %q is not an integer in [%d, %d]", key, v, lo, hi)
	}
	return n, nil
}

// Annotations are the knast annotations the FreeBSD backend reads.
func Annotations() []string {
	return []string{AnnotationChildrenMax, AnnotationDevfsRuleset, AnnotationLinuxOSRelease, AnnotationRctl, AnnotationSecurelevel}
}
