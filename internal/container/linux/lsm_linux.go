//go:build linux

package linux

import (
	"errors"
	"fmt"
	"os"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ApplyLSM sets the AppArmor profile and SELinux label the process's next execve runs under. A profile
// on a host without AppArmor is an error: the config asks for confinement the host cannot give. An
// SELinux label on a host without SELinux is ignored, as runc and every SELinux-aware tool do.
func ApplyLSM(p *specs.Process) error {
	if p.ApparmorProfile != "" {
		if !apparmorEnabled() {
			return errors.New("process.apparmorProfile: AppArmor is not enabled on this host")
		}
		if err := lsmWriteAttr("apparmor/exec", "exec "+p.ApparmorProfile); err != nil {
			return fmt.Errorf("process.apparmorProfile %q: %w", p.ApparmorProfile, err)
		}
	}
	if p.SelinuxLabel != "" && selinuxEnabled() {
		if err := lsmWriteAttr("exec", p.SelinuxLabel); err != nil {
			return fmt.Errorf("process.selinuxLabel %q: %w", p.SelinuxLabel, err)
		}
	}
	return nil
}

func apparmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && strings.HasPrefix(string(b), "Y")
}

func selinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}

// lsmWriteAttr writes the calling thread's /proc attr file; the caller is on the thread that will execve.
func lsmWriteAttr(name, value string) error {
	f, err := os.OpenFile("/proc/thread-self/attr/"+name, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = f.WriteString(value)
	return err
}

// LSMEnabled reports which of AppArmor and SELinux this host runs, for `features`.
func LSMEnabled() (apparmor, selinux bool) { return apparmorEnabled(), selinuxEnabled() }
