//go:build linux

package linux

import (
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/cyphar/filepath-securejoin/pathrs-lite/procfs"
	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The functions in this file run in the container's init, inside its namespaces, as root of its user
// namespace. /proc is reached through a private procfs handle (pathrs-lite), never through the
// container's /proc path, which the container's rootfs may have replaced or over-mounted.

// WriteSysctl writes each linux.sysctl value to /proc/sys/<SysctlPath(key)>. The net, ipc and uts
// entries seen are those of the calling process's namespaces. Whether a key is allowed for the
// container's namespaces is the config validator's decision; this only writes.
func WriteSysctl(sysctl map[string]string) error {
	if len(sysctl) == 0 {
		return nil
	}
	proc, err := procfs.OpenProcRoot()
	if err != nil {
		return fmt.Errorf("sysctl: open procfs: %w", err)
	}
	defer proc.Close()
	keys := make([]string, 0, len(sysctl))
	for k := range sysctl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		rel, err := SysctlPath(k)
		if err != nil {
			return fmt.Errorf("linux.sysctl: %w", err)
		}
		// OpenRoot resolves beneath the procfs root without crossing mounts or following magic links.
		h, err := proc.OpenRoot("sys/" + rel)
		if err != nil {
			return fmt.Errorf("linux.sysctl: %s: open /proc/sys/%s: %w", k, rel, err)
		}
		err = procWriteHandle(h, sysctl[k])
		h.Close()
		if err != nil {
			return fmt.Errorf("linux.sysctl: %s: write %q to /proc/sys/%s: %w", k, sysctl[k], rel, err)
		}
	}
	return nil
}

// procWriteHandle reopens an O_PATH procfs handle for writing and writes value in one write(2), as
// procfs expects.
func procWriteHandle(h *os.File, value string) error {
	f, err := pathrs.Reopen(h, unix.O_WRONLY|unix.O_CLOEXEC)
	if err != nil {
		return err
	}
	defer f.Close()
	n, err := f.WriteString(value)
	if err == nil && n != len(value) {
		err = io.ErrShortWrite
	}
	return err
}

// procReadSelf reads /proc/self/<name> through a private procfs handle.
func procReadSelf(name string) (string, error) {
	proc, err := procfs.OpenProcRoot()
	if err != nil {
		return "", fmt.Errorf("open procfs: %w", err)
	}
	defer proc.Close()
	h, err := proc.OpenSelf(name)
	if err != nil {
		return "", fmt.Errorf("open /proc/self/%s: %w", name, err)
	}
	defer h.Close()
	f, err := pathrs.Reopen(h, unix.O_RDONLY|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("open /proc/self/%s: %w", name, err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read /proc/self/%s: %w", name, err)
	}
	return string(b), nil
}

// SetHostname sets the hostname and NIS domain name of the calling process's UTS namespace; empty
// values are left alone.
func SetHostname(hostname, domainname string) error {
	if hostname != "" {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("hostname: sethostname %q: %w", hostname, err)
		}
	}
	if domainname != "" {
		if err := unix.Setdomainname([]byte(domainname)); err != nil {
			return fmt.Errorf("domainname: setdomainname %q: %w", domainname, err)
		}
	}
	return nil
}

// procRlimitResource maps a process.rlimits type to its resource number.
func procRlimitResource(name string) (int, bool) {
	switch name {
	case "RLIMIT_AS":
		return unix.RLIMIT_AS, true
	case "RLIMIT_CORE":
		return unix.RLIMIT_CORE, true
	case "RLIMIT_CPU":
		return unix.RLIMIT_CPU, true
	case "RLIMIT_DATA":
		return unix.RLIMIT_DATA, true
	case "RLIMIT_FSIZE":
		return unix.RLIMIT_FSIZE, true
	case "RLIMIT_LOCKS":
		return unix.RLIMIT_LOCKS, true
	case "RLIMIT_MEMLOCK":
		return unix.RLIMIT_MEMLOCK, true
	case "RLIMIT_MSGQUEUE":
		return unix.RLIMIT_MSGQUEUE, true
	case "RLIMIT_NICE":
		return unix.RLIMIT_NICE, true
	case "RLIMIT_NOFILE":
		return unix.RLIMIT_NOFILE, true
	case "RLIMIT_NPROC":
		return unix.RLIMIT_NPROC, true
	case "RLIMIT_RSS":
		return unix.RLIMIT_RSS, true
	case "RLIMIT_RTPRIO":
		return unix.RLIMIT_RTPRIO, true
	case "RLIMIT_RTTIME":
		return unix.RLIMIT_RTTIME, true
	case "RLIMIT_SIGPENDING":
		return unix.RLIMIT_SIGPENDING, true
	case "RLIMIT_STACK":
		return unix.RLIMIT_STACK, true
	}
	return 0, false
}

// SetRlimits applies process.rlimits to the calling process with prlimit(2). unix.Prlimit also tells the
// Go runtime about RLIMIT_NOFILE, so a later exec does not restore Go's startup value over ours.
func SetRlimits(rl []specs.POSIXRlimit) error {
	// Check every entry before changing anything.
	res := make([]int, len(rl))
	seen := make(map[string]bool, len(rl))
	for i, r := range rl {
		n, ok := procRlimitResource(r.Type)
		if !ok {
			return fmt.Errorf("process.rlimits: unknown type %q", r.Type)
		}
		if seen[r.Type] {
			return fmt.Errorf("process.rlimits: %s given more than once", r.Type)
		}
		seen[r.Type] = true
		if r.Soft > r.Hard {
			return fmt.Errorf("process.rlimits: %s: soft limit %d is above hard limit %d", r.Type, r.Soft, r.Hard)
		}
		res[i] = n
	}
	for i, r := range rl {
		lim := unix.Rlimit{Cur: r.Soft, Max: r.Hard}
		err := unix.Prlimit(0, res[i], &lim, nil)
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EPERM) {
			var old unix.Rlimit
			if unix.Prlimit(0, res[i], nil, &old) == nil && r.Hard > old.Max {
				if has, cerr := capInEffective(capability.CAP_SYS_RESOURCE); cerr == nil && !has {
					return fmt.Errorf("process.rlimits: %s: hard limit %d is above the current hard limit %d; raising a hard limit needs CAP_SYS_RESOURCE, which the runtime does not have (missing from the host's bounding set?)", r.Type, r.Hard, old.Max)
				}
			}
		}
		return fmt.Errorf("process.rlimits: %s: prlimit soft %d hard %d: %w", r.Type, r.Soft, r.Hard, err)
	}
	return nil
}

// SetOOMScoreAdj writes process.oomScoreAdj to /proc/self/oom_score_adj; nil leaves it alone.
func SetOOMScoreAdj(score *int) error {
	if score == nil {
		return nil
	}
	if *score < -1000 || *score > 1000 {
		return fmt.Errorf("process.oomScoreAdj: %d is outside [-1000, 1000]", *score)
	}
	proc, err := procfs.OpenProcRoot()
	if err != nil {
		return fmt.Errorf("process.oomScoreAdj: open procfs: %w", err)
	}
	defer proc.Close()
	h, err := proc.OpenSelf("oom_score_adj")
	if err != nil {
		return fmt.Errorf("process.oomScoreAdj: open /proc/self/oom_score_adj: %w", err)
	}
	defer h.Close()
	if err := procWriteHandle(h, strconv.Itoa(*score)); err != nil {
		if errors.Is(err, unix.EACCES) {
			if has, cerr := capInEffective(capability.CAP_SYS_RESOURCE); cerr == nil && !has {
				return fmt.Errorf("process.oomScoreAdj: %d: lowering the score needs CAP_SYS_RESOURCE, which the runtime does not have: %w", *score, err)
			}
		}
		return fmt.Errorf("process.oomScoreAdj: write %d to /proc/self/oom_score_adj: %w", *score, err)
	}
	return nil
}

// Keyring permission bits (keyctl(2), KEYCTL_SETPERM).
const (
	procKeyUsrSearch = 0x00080000
	procKeyOthSearch = 0x00000008
)

// JoinSessionKeyring gives the process a new session keyring called name (init passes "_ses.<id>"), so
// the container does not share the runtime's keyring, and makes it searchable as runc does: by its
// user, or by "other" inside a user namespace, where the keyring's owner is not the container's user.
// ENOSYS (no keyring support) and EACCES are tolerated: the separate keyring is defence in depth only.
func JoinSessionKeyring(name string) error {
	id, err := unix.KeyctlJoinSessionKeyring(name)
	if errors.Is(err, unix.ENOSYS) || errors.Is(err, unix.EACCES) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("join session keyring %q: %w", name, err)
	}
	desc, err := unix.KeyctlString(unix.KEYCTL_DESCRIBE, id)
	if err != nil {
		return fmt.Errorf("describe session keyring %q: %w", name, err)
	}
	// type;uid;gid;perm;description
	fields := strings.SplitN(desc, ";", 5)
	if len(fields) != 5 {
		return fmt.Errorf("describe session keyring %q: unexpected %q", name, desc)
	}
	perm, err := strconv.ParseUint(fields[3], 16, 32)
	if err != nil {
		return fmt.Errorf("describe session keyring %q: permissions %q: %w", name, fields[3], err)
	}
	add := uint64(procKeyUsrSearch)
	userns, err := procInUserNS()
	if err != nil {
		return fmt.Errorf("session keyring %q: %w", name, err)
	}
	if userns {
		add = procKeyOthSearch
	}
	if err := unix.KeyctlSetperm(id, uint32(perm|add)); err != nil {
		return fmt.Errorf("set permissions of session keyring %q: %w", name, err)
	}
	return nil
}

// procInUserNS reports whether the process runs in a user namespace other than the initial one, whose
// uid_map is the identity map of the whole range.
func procInUserNS() (bool, error) {
	m, err := procReadSelf("uid_map")
	if err != nil {
		return false, err
	}
	f := strings.Fields(m)
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295"), nil
}

// FinalizeProcess turns the init into the container's process: supplementary groups
// (process.user.additionalGids), gid, uid, the five capability sets, no_new_privs and the umask.
//
// Capabilities and no_new_privs belong to the calling thread, so the caller must have called
// runtime.LockOSThread and must execve from this same thread, with nothing in between that could move
// it. Uid, gid and groups change on every thread (Go's setuid family does that).
//
// Capabilities are applied exactly as given, with these rules (matching runc where it has one):
//   - nil process.capabilities leaves the sets alone, as runc does;
//   - a name knast does not know is an error naming the set and the name (runc only warns);
//   - a capability knast knows but the running kernel does not (newer than it) is skipped;
//   - the bounding set can only shrink: a listed capability the runtime's own bounding set lacks stays
//     absent, without error, as with runc (e.g. CAP_SYS_RESOURCE on a host that dropped it);
//   - a permitted, effective or inheritable capability that cannot be granted is an error naming it
//     (runc fails there too, with a bare "operation not permitted" from capset);
//   - an ambient capability not also in both permitted and inheritable is skipped, as runc and crun do
//     (the kernel cannot raise it; runc's own default config lists ambient without inheritable).
func FinalizeProcess(p *specs.Process) error {
	if p == nil {
		return errors.New("process: missing")
	}
	var caps *capSets
	if p.Capabilities != nil {
		last, err := capability.LastCap()
		if err != nil {
			return fmt.Errorf("process.capabilities: %w", err)
		}
		want, err := capParseAll(p.Capabilities, last)
		if err != nil {
			return err
		}
		cur, err := capRead(last)
		if err != nil {
			return fmt.Errorf("process.capabilities: %w", err)
		}
		want.bounding &= cur.bounding
		want.ambient &= want.permitted & want.inheritable
		if err := capCheck(want, cur); err != nil {
			return err
		}
		// Dropping from the bounding set needs CAP_SETPCAP, which the uid change below takes away.
		if err := capDropBounding(want.bounding, cur.bounding, last); err != nil {
			return fmt.Errorf("process.capabilities.bounding: %w", err)
		}
		caps = &want
	}
	if err := procSetGroups(p.User.AdditionalGids); err != nil {
		return err
	}
	// Keep the permitted set across the switch away from uid 0; capset then trims it.
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if err := syscall.Setgid(int(p.User.GID)); err != nil {
		return fmt.Errorf("process.user.gid: setgid %d: %w", p.User.GID, err)
	}
	if err := syscall.Setuid(int(p.User.UID)); err != nil {
		return fmt.Errorf("process.user.uid: setuid %d: %w", p.User.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_KEEPCAPS): %w", err)
	}
	if caps != nil {
		if err := capSetThread(*caps); err != nil {
			return fmt.Errorf("process.capabilities: %w", err)
		}
		if err := capSetAmbient(caps.ambient); err != nil {
			return fmt.Errorf("process.capabilities.ambient: %w", err)
		}
	}
	if p.NoNewPrivileges {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("process.noNewPrivileges: %w", err)
		}
	}
	umask := uint32(0o022)
	if p.User.Umask != nil {
		umask = *p.User.Umask
	}
	if umask > 0o777 {
		return fmt.Errorf("process.user.umask: %#o is not a permission mask", umask)
	}
	unix.Umask(int(umask))
	return nil
}

// procSetGroups sets the supplementary groups to exactly gids, clearing those inherited from the
// runtime. In a user namespace whose setgroups file says "deny" nothing can be changed: like runc this is
// no error when no groups were asked for.
func procSetGroups(gids []uint32) error {
	g := make([]int, len(gids))
	for i, id := range gids {
		g[i] = int(id)
	}
	err := syscall.Setgroups(g)
	if err == nil {
		return nil
	}
	if errors.Is(err, unix.EPERM) {
		if s, rerr := procReadSelf("setgroups"); rerr == nil && strings.TrimSpace(s) == "deny" {
			if len(gids) == 0 {
				return nil
			}
			return fmt.Errorf("process.user.additionalGids: setgroups is denied in this user namespace: %w", err)
		}
	}
	return fmt.Errorf("process.user.additionalGids: setgroups %v: %w", gids, err)
}
