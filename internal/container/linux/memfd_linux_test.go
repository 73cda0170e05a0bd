//go:build linux

package linux

import (
	"bytes"
	"debug/elf"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMemfdSealedCopy(t *testing.T) {
	exe, err := os.ReadFile("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	orig, err := elf.NewFile(bytes.NewReader(exe))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		content []byte
		trimmed bool // an ELF file: only what execve loads is copied
	}{
		{"empty", nil, false},
		{"small", []byte("#!/bin/sh\necho hi\n"), false},
		{"truncated ELF header", exe[:40], false},
		{"this binary", exe, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			if err := os.WriteFile(src, tc.content, 0o755); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(src)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := memfdSealedCopy(f, "knast-test")
			if err != nil {
				t.Fatalf("memfdSealedCopy: %v", err)
			}
			defer m.Close()

			got, err := os.ReadFile("/proc/self/fd/" + strconv.Itoa(int(m.Fd())))
			if err != nil {
				t.Fatal(err)
			}
			if !tc.trimmed && !bytes.Equal(got, tc.content) {
				t.Errorf("copy has %d bytes, want %d identical ones", len(got), len(tc.content))
			}
			if tc.trimmed {
				memfdTestCheckTrimmed(t, got, tc.content, orig)
			}
			seals, err := unix.FcntlInt(m.Fd(), unix.F_GET_SEALS, 0)
			if err != nil {
				t.Fatal(err)
			}
			if seals&memfdSeals != memfdSeals {
				t.Errorf("seals %#x, want all of %#x", seals, memfdSeals)
			}
			if fl, err := unix.FcntlInt(m.Fd(), unix.F_GETFD, 0); err != nil || fl&unix.FD_CLOEXEC == 0 {
				t.Errorf("memfd flags %#x, %v: want close-on-exec", fl, err)
			}
			// Every way of changing the content fails.
			if _, err := unix.Pwrite(int(m.Fd()), []byte("x"), 0); !errors.Is(err, unix.EPERM) {
				t.Errorf("pwrite: %v, want EPERM", err)
			}
			if err := unix.Ftruncate(int(m.Fd()), 1); !errors.Is(err, unix.EPERM) {
				t.Errorf("ftruncate: %v, want EPERM", err)
			}
			if _, err := unix.FcntlInt(m.Fd(), unix.F_ADD_SEALS, unix.F_SEAL_EXEC); !errors.Is(err, unix.EPERM) {
				t.Errorf("add seal: %v, want EPERM", err)
			}
			if len(got) > 0 {
				if _, err := unix.Mmap(int(m.Fd()), 0, len(got), unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
					t.Errorf("writable shared mmap: %v, want EPERM", err)
				}
			}
		})
	}
}

// memfdTestCheckTrimmed asserts got is orig cut after its last segment, with
// a header that declares no sections and the same segments.
func memfdTestCheckTrimmed(t *testing.T, got, content []byte, orig *elf.File) {
	t.Helper()
	var end uint64
	for _, p := range orig.Progs {
		end = max(end, p.Off+p.Filesz)
	}
	if uint64(len(got)) != end || end >= uint64(len(content)) {
		t.Fatalf("copy has %d bytes, want %d (segments end) of %d", len(got), end, len(content))
	}
	if !bytes.Equal(got[64:], content[64:end]) {
		t.Error("copy differs from the original after the ELF header")
	}
	cp, err := elf.NewFile(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("copy is not a valid ELF file: %v", err)
	}
	if len(cp.Sections) != 0 {
		t.Errorf("copy declares %d sections, want none", len(cp.Sections))
	}
	if cp.Entry != orig.Entry || len(cp.Progs) != len(orig.Progs) {
		t.Fatalf("copy entry %#x with %d segments, want %#x with %d", cp.Entry, len(cp.Progs), orig.Entry, len(orig.Progs))
	}
	for i := range cp.Progs {
		if cp.Progs[i].ProgHeader != orig.Progs[i].ProgHeader {
			t.Errorf("segment %d: %+v, want %+v", i, cp.Progs[i].ProgHeader, orig.Progs[i].ProgHeader)
		}
	}
}

// BenchmarkMemfdSealedCopy measures the copy on the hot path of every spawn:
// this test binary, and a 10 MiB file (about the size of knast).
func BenchmarkMemfdSealedCopy(b *testing.B) {
	big := filepath.Join(b.TempDir(), "10MiB")
	if err := os.WriteFile(big, bytes.Repeat([]byte("knast\x00\x7f"), 10<<20/7), 0o755); err != nil {
		b.Fatal(err)
	}
	for _, path := range []string{"/proc/self/exe", big} {
		b.Run(filepath.Base(path), func(b *testing.B) {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(st.Size())
			for b.Loop() {
				m, err := memfdSealedCopy(f, "knast-bench")
				if err != nil {
					b.Fatal(err)
				}
				m.Close()
			}
		})
	}
}
