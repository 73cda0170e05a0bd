package spec

import (
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExampleFreeBSD returns the config `knast spec` writes on FreeBSD: runc's example carried over to a
// jail. The jail gets its own host names, network stack (vnet) and System V IPC, sees only its own
// mounts (enforce_statfs 2), and gets devfs with the jail ruleset, fdescfs and procfs. There is no
// rootless variant: only root can make jails.
func ExampleFreeBSD() *specs.Spec {
	statfs := 2
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs", Readonly: true},
		Process: &specs.Process{
			Terminal: true,
			Args:     []string{"sh"},
			Env:      []string{"PATH=" + DefaultPath, "TERM=xterm"},
			Cwd:      "/",
			// noNewPrivileges needs FreeBSD 14 (procctl PROC_NO_NEW_PRIVS_CTL); 13 is supported too.
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Hostname: "knast",
		Mounts:   freebsdMounts(false),
		FreeBSD: &specs.FreeBSD{Jail: &specs.FreeBSDJail{
			Host: specs.FreeBSDShareNew, Vnet: specs.FreeBSDShareNew, EnforceStatfs: &statfs,
			SysVMsg: specs.FreeBSDShareNew, SysVSem: specs.FreeBSDShareNew, SysVShm: specs.FreeBSDShareNew,
		}},
	}
}

// freebsdMounts are the file systems of a jail: FreeBSD's own, or the Linux ABI's for a Linux image
// (linprocfs, linsysfs, fdescfs with linrdlnk so /dev/fd links read like Linux's, a /dev/shm tmpfs).
func freebsdMounts(linuxABI bool) []specs.Mount {
	if !linuxABI {
		return []specs.Mount{
			{Destination: "/dev", Type: "devfs", Source: "devfs", Options: []string{"ruleset=4"}},
			{Destination: "/dev/fd", Type: "fdescfs", Source: "fdescfs"},
			{Destination: "/proc", Type: "procfs", Source: "proc", Options: []string{"nosuid", "noexec"}},
		}
	}
	return []specs.Mount{
		{Destination: "/dev", Type: "devfs", Source: "devfs", Options: []string{"ruleset=4"}},
		{Destination: "/dev/fd", Type: "fdescfs", Source: "fdescfs", Options: []string{"linrdlnk"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "mode=1777", "size=64m"}},
		{Destination: "/proc", Type: "linprocfs", Source: "linprocfs", Options: []string{"nosuid", "noexec"}},
		{Destination: "/sys", Type: "linsysfs", Source: "linsysfs", Options: []string{"nosuid", "noexec", "ro"}},
	}
}

// FreeBSDHost turns a config made for Linux (FromImage's) into one for a FreeBSD host running an image
// of imageOS: "freebsd" runs natively, "linux" in a Linux-ABI jail (linux64.ko). The Linux section goes
// (namespaces, capabilities, seccomp and cgroups have no jail meaning), the mounts become the jail's,
// and the jail gets the same isolation as ExampleFreeBSD. User, environment, args and annotations stay.
func FreeBSDHost(s *specs.Spec, imageOS string) error {
	if s == nil || s.Process == nil {
		return fmt.Errorf("freebsd host config: no process")
	}
	linuxABI := false
	switch imageOS {
	case "freebsd":
	case "linux", "":
		linuxABI = true
		imageOS = "linux"
	default:
		return fmt.Errorf("os: a FreeBSD host runs freebsd and linux images, not %q", imageOS)
	}
	ex := ExampleFreeBSD()
	s.Linux = nil
	s.Mounts = freebsdMounts(linuxABI)
	s.FreeBSD = ex.FreeBSD
	p := s.Process
	p.Capabilities = nil
	p.ApparmorProfile, p.SelinuxLabel = "", ""
	p.OOMScoreAdj = nil
	p.Scheduler, p.IOPriority, p.ExecCPUAffinity = nil, nil, nil
	rl := p.Rlimits[:0]
	for _, r := range p.Rlimits {
		if knownRlimit(r.Type, false) {
			rl = append(rl, r)
		}
	}
	p.Rlimits = rl
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	// The backend reads this to make a Linux-ABI jail.
	s.Annotations[AnnotationOS] = imageOS
	if err := Validate(s); err != nil {
		return fmt.Errorf("generated config: %w", err)
	}
	return nil
}

// FromImageFreeBSD is FromImage for a FreeBSD host: it accepts FreeBSD and Linux images and returns the
// FreeBSDHost form of the config.
func FromImageFreeBSD(cfg ocispec.Image, rootfs string, o FromImageOptions) (*specs.Spec, error) {
	imageOS := cfg.OS
	switch imageOS {
	case "freebsd":
		// FromImage's conversion holds for any Unix image; it only refuses non-Linux ones.
		cfg.OS = "linux"
	case "", "linux":
	default:
		return nil, fmt.Errorf("os: the image is for %q, not freebsd or linux", imageOS)
	}
	s, err := FromImage(cfg, rootfs, o)
	if err != nil {
		return nil, err
	}
	if imageOS == "" {
		imageOS = "linux"
	}
	if err := FreeBSDHost(s, imageOS); err != nil {
		return nil, err
	}
	return s, nil
}
