package console

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	ioctlGetTermios = unix.TIOCGETA
	ioctlSetTermios = unix.TIOCSETA
)

// fiodgnameArg is struct fiodgname_arg from <sys/filio.h>.
type fiodgnameArg struct {
	len int32
	buf unsafe.Pointer
}

// fiodgname is FIODGNAME, _IOW('f', 120, struct fiodgname_arg); x/sys does not
// define it and its value depends on the pointer size.
const fiodgname = 0x80000000 | (unsafe.Sizeof(fiodgnameArg{})&0x1fff)<<16 | 'f'<<8 | 120

// NewPty opens a new pty master with posix_openpt(2); FreeBSD's pts(4) slaves
// need no unlocking. The master is named "/dev/ptmx" like on Linux.
func NewPty() (master *os.File, slavePath string, err error) {
	r, _, errno := unix.Syscall(unix.SYS_POSIX_OPENPT, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0, 0)
	if errno != 0 {
		return nil, "", fmt.Errorf("posix_openpt: %w", errno)
	}
	fd := int(r)
	// grantpt/unlockpt are checks only on FreeBSD: make sure this is a master.
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TIOCPTMASTER, 0); errno != 0 {
		unix.Close(fd)
		return nil, "", fmt.Errorf("check pty master: %w", errno)
	}
	buf := make([]byte, 64)
	arg := fiodgnameArg{len: int32(len(buf)), buf: unsafe.Pointer(&buf[0])}
	_, _, errno = unix.Syscall(unix.SYS_IOCTL, uintptr(fd), fiodgname, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(buf)
	if errno != 0 {
		unix.Close(fd)
		return nil, "", fmt.Errorf("get pty name: %w", errno)
	}
	name := unix.ByteSliceToString(buf)
	if name == "" {
		unix.Close(fd)
		return nil, "", fmt.Errorf("get pty name: empty")
	}
	return os.NewFile(uintptr(fd), "/dev/ptmx"), "/dev/" + name, nil
}
