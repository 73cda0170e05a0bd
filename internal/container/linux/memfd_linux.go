//go:build linux

package linux

import (
	"debug/elf"
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

// memfdSealedCopy copies src into a new sealed memfd named name; of an ELF
// file only the part execve loads.
func memfdSealedCopy(src *os.File, name string) (*os.File, error) {
	st, err := src.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", src.Name(), err)
	}
	size := st.Size()
	header, loaded := memfdELFTrim(src, size)

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
	if err := memfdFill(mem, src, loaded); err != nil {
		mem.Close()
		return nil, err
	}
	if header != nil {
		if _, err := mem.WriteAt(header, 0); err != nil {
			mem.Close()
			return nil, fmt.Errorf("write ELF header to memfd: %w", err)
		}
	}
	if _, err := unix.FcntlInt(mem.Fd(), unix.F_ADD_SEALS, memfdSeals); err != nil {
		mem.Close()
		return nil, fmt.Errorf("seal memfd: %w", err)
	}
	return mem, nil
}

// memfdELFTrim returns how much of an ELF executable execve needs: up to the
// end of the last segment. What follows (DWARF, symbol and string tables,
// section headers: a third of a Go binary) is only for debuggers, and the
// copy's cost is per page. header is the ELF header rewritten to declare no
// sections, so the shortened file stays well-formed. For anything else (not
// ELF, nothing to trim) it returns nil, size: copy it all.
func memfdELFTrim(src io.ReaderAt, size int64) (header []byte, loaded int64) {
	f, err := elf.NewFile(io.NewSectionReader(src, 0, size))
	if err != nil {
		return nil, size
	}
	for _, p := range f.Progs {
		loaded = max(loaded, int64(p.Off+p.Filesz))
	}
	// e_shoff, e_shnum and e_shstrndx by class.
	shoff, shoffLen, shnum := 0x28, 8, 0x3c
	if f.Class == elf.ELFCLASS32 {
		shoff, shoffLen, shnum = 0x20, 4, 0x30
	}
	if loaded == 0 || loaded >= size || loaded < int64(shnum+4) {
		return nil, size
	}
	header = make([]byte, shnum+4)
	if _, err := src.ReadAt(header, 0); err != nil {
		return nil, size
	}
	clear(header[shoff : shoff+shoffLen])
	clear(header[shnum : shnum+4])
	return header, loaded
}

// memfdFill copies size bytes of src into dst with sendfile, which copies
// from the page cache without a round trip through user memory. Most of the
// time is the kernel allocating shmem pages (about 1.5 GB/s on our build VM;
// a 6.6 MB knast trimmed to 4.5 MB takes ~2.9 ms, untrimmed ~4.3 ms):
// preallocating with fallocate, mmap copies (even on several threads) and
// read/write loops were all as slow or slower, and copy_file_range refuses
// to cross from the binary's filesystem into shmem.
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
