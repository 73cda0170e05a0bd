//go:build linux

package linux

import (
	"bytes"
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
	for _, tc := range []struct {
		name    string
		content []byte
	}{
		{"empty", nil},
		{"small", []byte("#!/bin/sh\necho hi\n")},
		{"this binary", exe},
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
			if !bytes.Equal(got, tc.content) {
				t.Errorf("copy has %d bytes, want %d identical ones", len(got), len(tc.content))
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
			if len(tc.content) > 0 {
				if _, err := unix.Mmap(int(m.Fd()), 0, len(tc.content), unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
					t.Errorf("writable shared mmap: %v, want EPERM", err)
				}
			}
		})
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
