package spec

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Annotations FromImage writes besides the image's labels. The org.opencontainers.image keys are those of
// image-spec's conversion.md; the others name where the bundle came from.
const (
	AnnotationOS           = "org.opencontainers.image.os"
	AnnotationArch         = "org.opencontainers.image.architecture"
	AnnotationVariant      = "org.opencontainers.image.variant"
	AnnotationOSVersion    = "org.opencontainers.image.os.version"
	AnnotationOSFeatures   = "org.opencontainers.image.os.features"
	AnnotationAuthor       = "org.opencontainers.image.author"
	AnnotationCreated      = "org.opencontainers.image.created"
	AnnotationStopSignal   = "org.opencontainers.image.stopSignal"
	AnnotationExposedPorts = "org.opencontainers.image.exposedPorts"
	// AnnotationImageName is containerd's key for the full reference a container was made from.
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationImageDigest is the manifest digest the bundle was made from.
	AnnotationImageDigest = "io.github.knast.image.digest"
	// AnnotationVolumes lists config.Volumes (sorted, comma-separated): the org.opencontainers.image
	// namespace is reserved for the image spec, which defines no key for them.
	AnnotationVolumes = "io.github.knast.image.volumes"
)

// DefaultPath is the PATH a container gets when its image sets none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// maxIDFileSize bounds how much of the rootfs's /etc/passwd or /etc/group is read: the image is untrusted.
const maxIDFileSize = 32 << 20

// maxID is the largest uid/gid accepted, as in Docker (ids above it are reserved or overflow).
const maxID = 1<<31 - 1

// FromImageOptions are the caller's changes to what the image configures, like docker run's flags.
type FromImageOptions struct {
	// Args, when not empty, replaces the image's Cmd; the Entrypoint stays in front.
	Args []string
	// Env entries (KEY=VALUE) are set over the image's.
	Env []string
	// User, when set, replaces config.User: "uid", "uid:gid", "name" or "name:group".
	User string
	// WorkingDir, when set, replaces config.WorkingDir; it must be absolute.
	WorkingDir string
	// Hostname is the container's hostname; empty means "knast".
	Hostname string
	// Terminal gives the process a pty (and TERM=xterm unless the environment sets TERM).
	Terminal bool
	// Ref and Digest name the image (full reference, manifest digest); recorded as annotations.
	Ref    string
	Digest string
}

// imageCapabilities is the default set of containerd and Docker: images are built expecting it (chown,
// setuid, ... by a root process), unlike `knast spec`'s minimal runc set.
func imageCapabilities() []string {
	return []string{
		"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT",
		"CAP_KILL", "CAP_AUDIT_WRITE",
	}
}

// FromImage converts an image configuration into a runtime config for a bundle whose root filesystem,
// the image's layers unpacked, is rootfs (root.path "rootfs", writable). It follows image-spec's
// conversion.md: Entrypoint+Cmd, Env over the default PATH, WorkingDir, User resolved through rootfs's
// /etc/passwd and /etc/group (read without leaving rootfs), and the remaining fields as annotations.
// The rest is Example(false) with containerd's default capabilities and no terminal. Errors name the
// image configuration field at fault. The output targets Linux on every host.
func FromImage(cfg ocispec.Image, rootfs string, o FromImageOptions) (*specs.Spec, error) {
	c := cfg.Config
	if cfg.OS != "" && cfg.OS != "linux" {
		return nil, fmt.Errorf("os: the image is for %q, not linux", cfg.OS)
	}
	s := Example(false)
	s.Root = &specs.Root{Path: "rootfs"}
	s.Hostname = o.Hostname
	if s.Hostname == "" {
		s.Hostname = "knast"
	}
	caps := imageCapabilities()
	s.Process.Capabilities = &specs.LinuxCapabilities{
		Bounding:  slices.Clone(caps),
		Effective: slices.Clone(caps),
		Permitted: slices.Clone(caps),
	}
	s.Linux.Seccomp = DefaultSeccompFor(runtime.GOARCH, caps)
	p := s.Process
	p.Terminal = o.Terminal

	args, err := imageArgs(c, o.Args)
	if err != nil {
		return nil, err
	}
	p.Args = args

	p.Cwd = "/"
	field, wd := "config.WorkingDir", c.WorkingDir
	if o.WorkingDir != "" {
		field, wd = "working dir", o.WorkingDir
	}
	if wd != "" {
		if !strings.HasPrefix(wd, "/") {
			return nil, fmt.Errorf("%s: %q is not absolute", field, wd)
		}
		if strings.IndexByte(wd, 0) >= 0 {
			return nil, fmt.Errorf("%s: contains a NUL byte", field)
		}
		p.Cwd = path.Clean(wd)
	}

	env := []string{"PATH=" + DefaultPath}
	for i, e := range c.Env {
		if env, err = setEnv(env, e); err != nil {
			return nil, fmt.Errorf("config.Env[%d]: %w", i, err)
		}
	}

	field, userSpec := "config.User", c.User
	if o.User != "" {
		field, userSpec = "user", o.User
	}
	u, home, err := resolveUser(rootfs, userSpec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", field, err)
	}
	p.User = u
	if !hasEnv(env, "HOME") {
		env = append(env, "HOME="+home)
	}
	if o.Terminal && !hasEnv(env, "TERM") {
		env = append(env, "TERM=xterm")
	}
	for i, e := range o.Env {
		if env, err = setEnv(env, e); err != nil {
			return nil, fmt.Errorf("env[%d]: %w", i, err)
		}
	}
	p.Env = env

	s.Annotations = imageAnnotations(cfg)
	if o.Ref != "" {
		s.Annotations[AnnotationImageName] = o.Ref
	}
	if o.Digest != "" {
		s.Annotations[AnnotationImageDigest] = o.Digest
	}
	if len(s.Annotations) == 0 {
		s.Annotations = nil
	}
	// A backstop: whatever FromImage builds must load with Load.
	if err := Validate(s); err != nil {
		return nil, fmt.Errorf("generated config: %w", err)
	}
	return s, nil
}

// imageArgs is Entrypoint followed by Cmd, or by args when given (docker run IMAGE ARGS...).
func imageArgs(c ocispec.ImageConfig, override []string) ([]string, error) {
	cmd := c.Cmd
	if len(override) > 0 {
		cmd = override
	}
	args := append(slices.Clone(c.Entrypoint), cmd...)
	if len(args) == 0 {
		return nil, errors.New("config.Cmd: the image has no Entrypoint or Cmd and no command was given")
	}
	if args[0] == "" {
		if len(c.Entrypoint) > 0 {
			return nil, errors.New("config.Entrypoint[0]: is empty")
		}
		return nil, errors.New("config.Cmd[0]: is empty")
	}
	for i, a := range args {
		if strings.IndexByte(a, 0) >= 0 {
			return nil, fmt.Errorf("args[%d]: contains a NUL byte", i)
		}
	}
	return args, nil
}

// setEnv sets KEY=VALUE e in env, replacing an earlier value of KEY in place.
func setEnv(env []string, e string) ([]string, error) {
	k, _, ok := strings.Cut(e, "=")
	switch {
	case !ok:
		return nil, fmt.Errorf("%q is not KEY=VALUE", e)
	case k == "":
		return nil, fmt.Errorf("%q has an empty name", e)
	case strings.IndexByte(e, 0) >= 0:
		return nil, fmt.Errorf("%q contains a NUL byte", e)
	}
	for i, old := range env {
		if strings.HasPrefix(old, k+"=") {
			env[i] = e
			return env, nil
		}
	}
	return append(env, e), nil
}

func hasEnv(env []string, key string) bool {
	return slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, key+"=") })
}

// imageAnnotations are conversion.md's implicit annotations, overridden by the image's labels.
func imageAnnotations(cfg ocispec.Image) map[string]string {
	a := map[string]string{}
	set := func(k, v string) {
		if v != "" {
			a[k] = v
		}
	}
	set(AnnotationOS, cfg.OS)
	set(AnnotationArch, cfg.Architecture)
	set(AnnotationVariant, cfg.Variant)
	set(AnnotationOSVersion, cfg.OSVersion)
	set(AnnotationOSFeatures, strings.Join(cfg.OSFeatures, ","))
	set(AnnotationAuthor, cfg.Author)
	if cfg.Created != nil {
		set(AnnotationCreated, cfg.Created.UTC().Format(time.RFC3339Nano))
	}
	set(AnnotationStopSignal, cfg.Config.StopSignal)
	set(AnnotationExposedPorts, strings.Join(sortedKeys(cfg.Config.ExposedPorts), ","))
	set(AnnotationVolumes, strings.Join(sortedKeys(cfg.Config.Volumes), ","))
	for k, v := range cfg.Config.Labels {
		if k != "" {
			a[k] = v
		}
	}
	return a
}

// passwdEntry and groupEntry are the fields of /etc/passwd and /etc/group lines that matter here.
type passwdEntry struct {
	name     string
	uid, gid uint32
	home     string
}

type groupEntry struct {
	name    string
	gid     uint32
	members []string
}

// resolveUser turns an image's User ("", "uid", "uid:gid", "name", "name:group") into process.user and
// the user's home directory, the way Docker does: names resolved through rootfs's /etc/passwd and
// /etc/group; numeric ids taken as they are; without a group, the passwd entry's primary group and the
// groups listing the user as a member.
func resolveUser(rootfs, spec string) (specs.User, string, error) {
	userPart, groupPart, _ := strings.Cut(spec, ":")
	uid, uidNumeric, err := parseID(userPart)
	if err != nil {
		return specs.User{}, "", fmt.Errorf("user %q: %w", userPart, err)
	}
	if userPart == "" {
		uid, uidNumeric = 0, true // no user: root, as in every runtime
	}
	passwd, err := readPasswd(rootfs)
	if err != nil {
		return specs.User{}, "", err
	}
	var pw *passwdEntry
	for i := range passwd {
		if (uidNumeric && passwd[i].uid == uid) || (!uidNumeric && passwd[i].name == userPart) {
			pw = &passwd[i]
			break
		}
	}
	if pw == nil && !uidNumeric {
		return specs.User{}, "", fmt.Errorf("user %q not found in /etc/passwd", userPart)
	}
	u := specs.User{UID: uid}
	home := "/"
	if pw != nil {
		u.UID, u.GID = pw.uid, pw.gid
		if pw.home != "" {
			home = pw.home
		}
	}

	groupNeeded := groupPart != "" || (pw != nil && pw.name != "")
	var groups []groupEntry
	if groupNeeded {
		if groups, err = readGroup(rootfs); err != nil {
			return specs.User{}, "", err
		}
	}
	if groupPart != "" {
		// An explicit group replaces the primary group; image-spec: then no supplementary groups.
		gid, gidNumeric, err := parseID(groupPart)
		if err != nil {
			return specs.User{}, "", fmt.Errorf("group %q: %w", groupPart, err)
		}
		if !gidNumeric {
			i := slices.IndexFunc(groups, func(g groupEntry) bool { return g.name == groupPart })
			if i < 0 {
				return specs.User{}, "", fmt.Errorf("group %q not found in /etc/group", groupPart)
			}
			gid = groups[i].gid
		}
		u.GID = gid
		return u, home, nil
	}
	if pw != nil && pw.name != "" {
		for _, g := range groups {
			if slices.Contains(g.members, pw.name) && g.gid != u.GID && !slices.Contains(u.AdditionalGids, g.gid) {
				u.AdditionalGids = append(u.AdditionalGids, g.gid)
			}
		}
	}
	return u, home, nil
}

// parseID reports whether s is a numeric id and its value; a number out of range is an error, anything
// else a name.
func parseID(s string) (uint32, bool, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n > maxID {
		return 0, true, fmt.Errorf("ids must be in the range 0-%d", maxID)
	}
	return uint32(n), true, nil
}

func readPasswd(rootfs string) ([]passwdEntry, error) {
	lines, err := readIDFile(rootfs, "/etc/passwd")
	if err != nil {
		return nil, err
	}
	var out []passwdEntry
	for _, f := range lines {
		// name:password:uid:gid:gecos:home:shell
		if len(f) < 4 {
			continue
		}
		uid, ok1, err1 := parseID(f[2])
		gid, ok2, err2 := parseID(f[3])
		if !ok1 || !ok2 || err1 != nil || err2 != nil {
			continue
		}
		e := passwdEntry{name: f[0], uid: uid, gid: gid}
		if len(f) > 5 {
			e.home = f[5]
		}
		out = append(out, e)
	}
	return out, nil
}

func readGroup(rootfs string) ([]groupEntry, error) {
	lines, err := readIDFile(rootfs, "/etc/group")
	if err != nil {
		return nil, err
	}
	var out []groupEntry
	for _, f := range lines {
		// name:password:gid:member,member
		if len(f) < 3 {
			continue
		}
		gid, ok, err := parseID(f[2])
		if !ok || err != nil {
			continue
		}
		e := groupEntry{name: f[0], gid: gid}
		if len(f) > 3 {
			for m := range strings.SplitSeq(f[3], ",") {
				if m = strings.TrimSpace(m); m != "" {
					e.members = append(e.members, m)
				}
			}
		}
		out = append(out, e)
	}
	return out, nil
}

// readIDFile reads name inside rootfs and splits its entries into colon-separated fields, skipping
// blanks, comments and NIS (+/-) lines. A missing file (or no rootfs) is no entries.
func readIDFile(rootfs, name string) ([][]string, error) {
	if rootfs == "" {
		return nil, nil
	}
	f, err := openInRoot(rootfs, name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open %s in %s: %w", name, rootfs, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxIDFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", name, rootfs, err)
	}
	if len(data) > maxIDFileSize {
		return nil, fmt.Errorf("%s in %s: larger than %d bytes", name, rootfs, maxIDFileSize)
	}
	var out [][]string
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '+' || line[0] == '-' {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, nil
}
