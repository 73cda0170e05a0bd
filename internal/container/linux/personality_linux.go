//go:build linux

package linux

import (
	"fmt"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Execution domains from <linux/personality.h>.
const (
	procPerLinux   = 0x0000
	procPerLinux32 = 0x0008
)

// SetPersonality sets the execution domain (personality(2)) from linux.personality; nil leaves it alone.
// The personality belongs to the calling thread and is inherited across execve, so like FinalizeProcess
// it must run on the locked thread that will execve. The spec defines no flags, so any flag is an error
// rather than silently ignored.
func SetPersonality(p *specs.LinuxPersonality) error {
	if p == nil {
		return nil
	}
	if len(p.Flags) > 0 {
		return fmt.Errorf("linux.personality.flags: %v: no flags are supported", p.Flags)
	}
	var persona uintptr
	switch p.Domain {
	case specs.PerLinux:
		persona = procPerLinux
	case specs.PerLinux32:
		persona = procPerLinux32
	default:
		return fmt.Errorf("linux.personality.domain: unknown domain %q (want %q or %q)", p.Domain, specs.PerLinux, specs.PerLinux32)
	}
	if _, _, errno := unix.Syscall(unix.SYS_PERSONALITY, persona, 0, 0); errno != 0 {
		return fmt.Errorf("linux.personality: personality(%#x): %w", persona, errno)
	}
	return nil
}
