package spec

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// seccompRules reports whether the profile allows name unconditionally, and the rules that mention it.
func seccompRules(s *specs.LinuxSeccomp, name string) (unconditional bool, rules []specs.LinuxSyscall) {
	for _, sc := range s.Syscalls {
		if slices.Contains(sc.Names, name) {
			rules = append(rules, sc)
			if sc.Action == specs.ActAllow && len(sc.Args) == 0 {
				unconditional = true
			}
		}
	}
	return unconditional, rules
}

func TestDefaultSeccompValidates(t *testing.T) {
	for _, goarch := range []string{"amd64", "arm64", "s390x", "riscv64", "ppc64le", "mips64le", "386"} {
		s := Example(false)
		s.Linux.Seccomp = DefaultSeccompFor(goarch, s.Process.Capabilities.Bounding)
		if err := Validate(s); err != nil {
			t.Errorf("%s: default profile does not validate: %v", goarch, err)
		}
	}
	if got := DefaultSeccomp(); got.DefaultAction != specs.ActErrno || got.DefaultErrnoRet == nil || *got.DefaultErrnoRet != 1 {
		t.Errorf("default action %s errnoRet %v, want SCMP_ACT_ERRNO with EPERM", got.DefaultAction, got.DefaultErrnoRet)
	}
}

func TestDefaultSeccompContents(t *testing.T) {
	def := DefaultSeccompFor("amd64", defaultCapabilities)
	admin := DefaultSeccompFor("amd64", append(slices.Clone(defaultCapabilities), "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"))
	tests := []struct {
		profile *specs.LinuxSeccomp
		name    string
		allowed bool // unconditionally allowed
		present bool // mentioned by some rule
	}{
		{def, "read", true, true},
		{def, "write", true, true},
		{def, "execve", true, true},
		{def, "exit_group", true, true},
		{def, "openat2", true, true},
		{def, "arch_prctl", true, true},
		{def, "ptrace", true, true},
		{def, "kexec_load", false, false},
		{def, "mount", false, false},
		{def, "unshare", false, false},
		{def, "setns", false, false},
		{def, "bpf", false, false},
		{def, "process_vm_readv", false, false},
		{def, "reboot", false, false},
		{def, "clone", false, true},
		{def, "clone3", false, true},
		{def, "personality", false, true},
		{admin, "mount", true, true},
		{admin, "unshare", true, true},
		{admin, "clone", true, true},
		{admin, "clone3", true, true},
		{admin, "process_vm_readv", true, true},
		{admin, "kexec_load", false, false},
	}
	for _, tc := range tests {
		allowed, rules := seccompRules(tc.profile, tc.name)
		if allowed != tc.allowed || (len(rules) > 0) != tc.present {
			t.Errorf("%s: allowed %v present %v, want %v %v (rules %+v)", tc.name, allowed, len(rules) > 0,
				tc.allowed, tc.present, rules)
		}
	}
}

func TestDefaultSeccompCloneRules(t *testing.T) {
	tests := []struct {
		goarch   string
		flagsArg uint
		enosys   uint
	}{
		{"amd64", 0, 38},
		{"arm64", 0, 38},
		{"s390x", 1, 38},
		{"mips64le", 0, 89},
	}
	for _, tc := range tests {
		s := DefaultSeccompFor(tc.goarch, defaultCapabilities)
		_, clone := seccompRules(s, "clone")
		if len(clone) != 1 || len(clone[0].Args) != 1 {
			t.Fatalf("%s: clone rules %+v, want one with one argument", tc.goarch, clone)
		}
		a := clone[0].Args[0]
		if a.Op != specs.OpMaskedEqual || a.Index != tc.flagsArg || a.ValueTwo != 0 ||
			a.Value&cloneNewUser == 0 || a.Value&cloneNewNS == 0 || a.Value&cloneNewPID == 0 ||
			a.Value&cloneNewNet == 0 || a.Value&cloneNewCgroup == 0 {
			t.Errorf("%s: clone argument rule %+v does not mask the namespace flags on arg %d", tc.goarch, a, tc.flagsArg)
		}
		_, clone3 := seccompRules(s, "clone3")
		if len(clone3) != 1 || clone3[0].Action != specs.ActErrno || clone3[0].ErrnoRet == nil ||
			*clone3[0].ErrnoRet != tc.enosys {
			t.Errorf("%s: clone3 rules %+v, want SCMP_ACT_ERRNO with ENOSYS %d", tc.goarch, clone3, tc.enosys)
		}
	}
}

func TestDefaultSeccompPersonality(t *testing.T) {
	_, rules := seccompRules(DefaultSeccomp(), "personality")
	var values []uint64
	for _, r := range rules {
		if r.Action != specs.ActAllow || len(r.Args) != 1 || r.Args[0].Op != specs.OpEqualTo || r.Args[0].Index != 0 {
			t.Fatalf("personality rule %+v is not an arg0 equality allow", r)
		}
		values = append(values, r.Args[0].Value)
	}
	slices.Sort(values)
	if want := []uint64{0, 0x8, 0x20000, 0x20008, 0xffffffff}; !slices.Equal(values, want) {
		t.Errorf("personality values %#x, want %#x", values, want)
	}
}

func TestDefaultSeccompArches(t *testing.T) {
	tests := []struct {
		goarch string
		want   []specs.Arch
	}{
		{"amd64", []specs.Arch{specs.ArchX86_64, specs.ArchX86, specs.ArchX32}},
		{"arm64", []specs.Arch{specs.ArchARM, specs.ArchAARCH64}},
		{"s390x", []specs.Arch{specs.ArchS390, specs.ArchS390X}},
		{"ppc64le", []specs.Arch{}},
	}
	for _, tc := range tests {
		if got := DefaultSeccompFor(tc.goarch, nil).Architectures; !slices.Equal(got, tc.want) {
			t.Errorf("%s: architectures %v, want %v", tc.goarch, got, tc.want)
		}
	}
	// Profiles are independent values: changing one must not change the next.
	a := DefaultSeccomp()
	a.Syscalls[0].Names[0] = "changed"
	if DefaultSeccomp().Syscalls[0].Names[0] == "changed" {
		t.Error("DefaultSeccomp shares its name slices between calls")
	}
}
