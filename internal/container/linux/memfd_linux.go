//go:build linux

package linux

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// memfdSeals make the copy immutable: no more seals, no size change, no
// writes. A container that opens /proc/<pid>/exe of a process running from it
// cannot change the binary the next knast invocation executes (CVE-2019-5736).
const memfdSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// memfdSealedExe returns a sealed, close-on-exec memfd holding a copy of the
// running binary (/proc/self/exe).
func memfdSealedExe() (*os.File, error) {
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("open /proc/self/exe: %w", err)
	}
	defer exe.Close()
	return memfdSealedCopy(exe, "knast")
}

// memfdSealedCopy copies src into a new sealed memfd named name.
func memfdSealedCopy(src *os.File, name string) (*os.File, error) {
	st, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", src.Name(), err)
	}
	size := st.Size()

	// MFD_EXEC keeps the memfd executable when vm.memfd_noexec asks for
	// non-executable memfds by default; kernels before 6.3 reject the flag.
	flags := unix.MFD_CLOEXEC | unix.MFD_ALLOW_SEALING
	fd, err := unix.MemfdCreate(name, flags|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) {
		fd, err = unix.MemfdCreate(name, flags)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	mem := os.NewFile(uintptr(fd), "memfd:"+name)
	if err := memfdFill(mem, src, size); err != nil {
		mem.Close()
		return nil, err
	}
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, memfdSeals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mem, nil
}

// memfdFill copies size bytes of src into dst with sendfile, which copies
// from the page cache without a round trip through user memory. Measured on
// our build host (7.3 MB, about 6 ms), most of the time is the kernel
// allocating shmem pages: preallocating with fallocate, mmap copies (even on
// several threads) and read/write loops were all as slow or slower, and
// copy_file_range refuses to cross from the binary's filesystem into shmem.
func memfdFill(dst, src *os.File, size int64) error {
	var off int64
	for off < size {
		n, err := unix.Sendfile(int(dst.Fd()), int(src.Fd()), &off, int(min(size-off, 1<<30)))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("copy %s to memfd: %w", src.Name(), err)
		}
		if n == 0 {
			return fmt.Errorf("copy %s to memfd: %w after %d of %d bytes", src.Name(), io.ErrUnexpectedEOF, off, size)
		}
	}
	return nil
}
