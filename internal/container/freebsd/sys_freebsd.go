//go:build freebsd

package freebsd

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrNoJail is returned by JailGet when no jail has the name.
var ErrNoJail = errors.New("no such jail")

// errmsgSize is the buffer the kernel may fill with a reason for jail_set/nmount failures.
const errmsgSize = 1024

// iovecs lays out the name/value byte strings as struct iovec; the caller keeps bufs alive.
func iovecs(bufs [][]byte) []unix.Iovec {
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		if len(b) > 0 {
			iov[i].Base = &b[0]
			iov[i].SetLen(len(b))
		}
	}
	return iov
}

// iovecCall runs jail_set/jail_get/nmount with params and an "errmsg" buffer, and returns the syscall's
// result; a failure carries the kernel's message when it gave one.
func iovecCall(trap uintptr, params []Param, flags int) (int, error) {
	errmsg := make([]byte, errmsgSize)
	bufs := append(Encode(params), cString("errmsg"), errmsg)
	iov := iovecs(bufs)
	r, _, errno := unix.Syscall(trap, uintptr(unsafe.Pointer(&iov[0])), uintptr(len(iov)), uintptr(flags))
	runtime.KeepAlive(bufs)
	if errno != 0 {
		if msg := unix.ByteSliceToString(errmsg); msg != "" {
			return -1, fmt.Errorf("%s: %w", msg, errno)
		}
		return -1, errno
	}
	return int(r), nil
}

// JailSet calls jail_set(2) and returns the jail's jid.
func JailSet(params []Param, flags int) (int, error) {
	jid, err := iovecCall(unix.SYS_JAIL_SET, params, flags)
	if err != nil {
		return -1, fmt.Errorf("jail_set: %w", err)
	}
	return jid, nil
}

// JailGet returns the jid of the jail called name (dying ones included), or ErrNoJail.
func JailGet(name string) (int, error) {
	jid, err := iovecCall(unix.SYS_JAIL_GET, JailGetParams(name), JailDying)
	if errors.Is(err, unix.ENOENT) {
		return -1, fmt.Errorf("jail %s: %w", name, ErrNoJail)
	}
	if err != nil {
		return -1, fmt.Errorf("jail_get %s: %w", name, err)
	}
	return jid, nil
}

// JailRemove removes jail jid and kills its processes.
func JailRemove(jid int) error {
	if _, _, errno := unix.Syscall(unix.SYS_JAIL_REMOVE, uintptr(jid), 0, 0); errno != 0 {
		return fmt.Errorf("jail_remove %d: %w", jid, errno)
	}
	return nil
}

// AttachJail moves the calling process into jail jid (root and cwd become the jail's path). Only the
// re-exec'd init calls it: the knast process itself must never enter a container.
func AttachJail(jid int) error {
	if _, _, errno := unix.Syscall(unix.SYS_JAIL_ATTACH, uintptr(jid), 0, 0); errno != 0 {
		return fmt.Errorf("jail_attach %d: %w", jid, errno)
	}
	return nil
}

// Nmount mounts m with nmount(2).
func Nmount(m Mount) error {
	if _, err := iovecCall(unix.SYS_NMOUNT, m.Params(), m.Flags); err != nil {
		return fmt.Errorf("mount %s on %s: %w", m.FSType, m.Path, err)
	}
	return nil
}

// MountedPaths lists the mount points of the system in mount order (getfsstat(2)).
func MountedPaths() ([]string, error) {
	n, err := unix.Getfsstat(nil, unix.MNT_NOWAIT)
	if err != nil {
		return nil, fmt.Errorf("getfsstat: %w", err)
	}
	// Room for mounts made meanwhile.
	buf := make([]unix.Statfs_t, n+16)
	n, err = unix.Getfsstat(buf, unix.MNT_NOWAIT)
	if err != nil {
		return nil, fmt.Errorf("getfsstat: %w", err)
	}
	out := make([]string, 0, n)
	for i := range buf[:n] {
		out = append(out, unix.ByteSliceToString(buf[i].Mntonname[:]))
	}
	return out, nil
}

// UnmountUnder unmounts everything mounted below dir (and dir itself with self), last mounted first.
// Paths already gone are fine, so it can run again after a crash.
func UnmountUnder(dir string, self bool) error {
	root, err := filepath.EvalSymlinks(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unmount under %s: %w", dir, err)
	}
	mounted, err := MountedPaths()
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range UnmountOrder(root, mounted, self) {
		err := unix.Unmount(p, 0)
		if err == unix.EBUSY {
			// Processes of a removed jail may still be exiting.
			err = unix.Unmount(p, MntForce)
		}
		if err != nil && err != unix.EINVAL && err != unix.ENOENT {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

// ApplyDeviceRules applies rules to the devfs mounted at dev (DEVFSIO_RAPPLY): the mount alone changes.
func ApplyDeviceRules(dev string, rules []DevfsRule) error {
	if len(rules) == 0 {
		return nil
	}
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open devfs %s: %w", dev, err)
	}
	defer unix.Close(fd)
	for _, r := range rules {
		b, err := r.Marshal()
		if err != nil {
			return err
		}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), uintptr(DevfsIORApply), uintptr(unsafe.Pointer(&b[0])))
		runtime.KeepAlive(b)
		if errno != 0 {
			return fmt.Errorf("devfs rule for %s on %s: %w", r.Pattern, dev, errno)
		}
	}
	return nil
}

// MoveInterface moves a network interface into the vnet of jail jid (SIOCSIFVNET).
func MoveInterface(name string, jid int) error {
	b, err := IfreqJid(name, jid)
	if err != nil {
		return err
	}
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(s)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(s), uintptr(SIOCSIFVNET), uintptr(unsafe.Pointer(&b[0])))
	runtime.KeepAlive(b)
	if errno != 0 {
		return fmt.Errorf("move interface %s into jail %d: %w", name, jid, errno)
	}
	return nil
}

// RacctEnabled reports whether the kernel accounts resources (kern.racct.enable, a loader tunable).
func RacctEnabled() bool {
	v, err := unix.SysctlUint32("kern.racct.enable")
	return err == nil && v != 0
}

// rctlCall passes a NUL-terminated rule or filter to an rctl syscall, with an output buffer.
func rctlCall(trap uintptr, in string, out []byte) error {
	b := cString(in)
	var outp unsafe.Pointer
	if len(out) > 0 {
		outp = unsafe.Pointer(&out[0])
	}
	_, _, errno := unix.Syscall6(trap, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), uintptr(outp), uintptr(len(out)), 0, 0)
	runtime.KeepAlive(b)
	runtime.KeepAlive(out)
	if errno != 0 {
		return errno
	}
	return nil
}

// AddRule adds an rctl rule; one on the same subject, resource and action is replaced by the kernel.
func AddRule(r Rule) error {
	if err := rctlCall(unix.SYS_RCTL_ADD_RULE, r.String(), nil); err != nil {
		if err == unix.ENOSYS {
			return ErrRacctDisabled
		}
		return fmt.Errorf("rctl_add_rule %s: %w", r, err)
	}
	return nil
}

// RemoveRules removes every rctl rule of a jail; none, or racct off, is fine.
func RemoveRules(jail string) error {
	err := rctlCall(unix.SYS_RCTL_REMOVE_RULE, RctlFilter(jail), nil)
	if err != nil && err != unix.ESRCH && err != unix.ENOSYS {
		return fmt.Errorf("rctl_remove_rule %s: %w", RctlFilter(jail), err)
	}
	return nil
}

// Racct returns the jail's resource usage as racct counts it.
func Racct(jail string) (map[string]uint64, error) {
	for size := 4096; size <= 1<<20; size *= 4 {
		out := make([]byte, size)
		err := rctlCall(unix.SYS_RCTL_GET_RACCT, RctlFilter(jail), out)
		if err == unix.ERANGE {
			continue
		}
		if err == unix.ENOSYS {
			return nil, ErrRacctDisabled
		}
		if err != nil {
			return nil, fmt.Errorf("rctl_get_racct %s: %w", RctlFilter(jail), err)
		}
		return ParseRacct(unix.ByteSliceToString(out))
	}
	return nil, fmt.Errorf("rctl_get_racct %s: answer larger than 1 MiB", RctlFilter(jail))
}

// JailProcs lists the live processes of jail jid (kern.proc.proc: every process, no threads).
func JailProcs(jid int) ([]Proc, error) {
	b, err := unix.SysctlRaw("kern.proc.proc")
	if err != nil {
		return nil, fmt.Errorf("sysctl kern.proc.proc: %w", err)
	}
	procs, err := ParseProcs(b)
	if err != nil {
		return nil, err
	}
	return InJail(procs, jid), nil
}
