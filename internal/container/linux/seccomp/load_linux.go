//go:build linux

package seccomp

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"runtime"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Load installs the filter with seccomp(2). Without SECCOMP_FILTER_FLAG_TSYNC in the profile the filter
// applies to the calling thread only: lock the goroutine to its thread (runtime.LockOSThread) and execve
// from that same thread, whose filter survives the exec while every other thread is gone. The caller has
// set no_new_privs or holds CAP_SYS_ADMIN, as the kernel requires.
//
// When the profile uses SCMP_ACT_NOTIFY the returned notifyFd is the listener fd (close-on-exec, owned by
// the caller, to be passed to SendNotifyFd); otherwise it is -1.
func (f *Filter) Load() (notifyFd int, err error) {
	if f == nil || len(f.prog) == 0 {
		return -1, errors.New("seccomp: load: empty filter")
	}
	prog := make([]unix.SockFilter, len(f.prog))
	for i, in := range f.prog {
		prog[i] = unix.SockFilter{Code: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}

	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(f.flags),
		uintptr(unsafe.Pointer(&fprog)))
	if errno == unix.ENOSYS && f.flags == 0 {
		// Kernels before 3.17 have no seccomp(2); prctl takes a flagless filter the same way.
		_, _, errno = unix.Syscall6(unix.SYS_PRCTL, unix.PR_SET_SECCOMP, unix.SECCOMP_MODE_FILTER,
			uintptr(unsafe.Pointer(&fprog)), 0, 0, 0)
		r = 0
	}
	runtime.KeepAlive(prog)
	switch {
	case errno == unix.EACCES:
		return -1, fmt.Errorf("seccomp: load filter: %w (neither no_new_privs nor CAP_SYS_ADMIN)", errno)
	case errno != 0:
		return -1, fmt.Errorf("seccomp: load filter (flags %#x): %w", f.flags, errno)
	case f.listener:
		return int(r), nil
	case r != 0:
		// With TSYNC (and no TSYNC_ESRCH) a positive result names the thread that could not be synchronized.
		return -1, fmt.Errorf("seccomp: load filter: thread %d could not be synchronized", r)
	}
	return -1, nil
}

// SendNotifyFd connects to the seccomp agent listening on the unix stream socket listenerPath and sends it
// the notify fd with SCM_RIGHTS together with state as JSON, in one message, then closes the connection
// (one state per connection, as the runtime-spec requires). state.Fds is set to ["seccompFd"] and an empty
// state.Version to this runtime-spec version; the caller fills Pid, Metadata (the profile's
// listenerMetadata) and State. listenerPath is a host path, so call this from the runtime side, not from
// inside the container's mount namespace. fd stays open: the caller closes it.
func SendNotifyFd(listenerPath string, fd int, state specs.ContainerProcessState) error {
	if fd < 0 {
		return fmt.Errorf("seccomp: send notify fd to %s: bad fd %d", listenerPath, fd)
	}
	state.Fds = []string{specs.SeccompFdName}
	if state.Version == "" {
		state.Version = specs.Version
	}
	payload, err := json.Marshal(state)
	if err != nil {
		return fmt.Errorf("seccomp: encode container process state: %w", err)
	}
	conn, err := net.DialUnix("unix", nil, &net.UnixAddr{Name: listenerPath, Net: "unix"})
	if err != nil {
		return fmt.Errorf("seccomp: connect to listener: %w", err)
	}
	defer conn.Close()
	n, _, err := conn.WriteMsgUnix(payload, unix.UnixRights(fd), nil)
	if err != nil {
		return fmt.Errorf("seccomp: send notify fd to %s: %w", listenerPath, err)
	}
	// A stream socket may take the message in parts; the fd went with the first one, as the spec asks.
	if n < len(payload) {
		if _, err := conn.Write(payload[n:]); err != nil {
			return fmt.Errorf("seccomp: send container process state to %s: %w", listenerPath, err)
		}
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("seccomp: close listener connection %s: %w", listenerPath, err)
	}
	return nil
}

// kernelAction reports whether the kernel implements the SECCOMP_RET_* action ret.
func kernelAction(ret uint32) bool {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_GET_ACTION_AVAIL, 0, uintptr(unsafe.Pointer(&ret)))
	if errno == unix.EINVAL && (ret == unix.SECCOMP_RET_KILL_THREAD || ret == unix.SECCOMP_RET_TRAP ||
		ret == unix.SECCOMP_RET_ERRNO || ret == unix.SECCOMP_RET_TRACE || ret == unix.SECCOMP_RET_ALLOW) {
		// Kernels before 4.14 cannot answer the question but have had these actions since 3.5.
		return true
	}
	return errno == 0
}

// kernelFlag reports whether the kernel accepts the SECCOMP_FILTER_FLAG_* bits flags. The kernel checks
// flags before it reads the program, so a NULL program gives EFAULT exactly when the flags are known.
func kernelFlag(flags uint) bool {
	_, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(flags), 0)
	return errno == unix.EFAULT
}
