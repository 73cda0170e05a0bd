package spec

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// baseSpec is a small valid Linux spec that each case modifies.
func baseSpec() *specs.Spec {
	return &specs.Spec{
		Version: "1.3.0",
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Env: []string{"PATH=/bin"}},
		Linux: &specs.Linux{Namespaces: []specs.LinuxNamespace{
			{Type: specs.PIDNamespace}, {Type: specs.MountNamespace},
		}},
	}
}

func ptr[T any](v T) *T { return &v }

// errLines splits a joined error into its lines; nil gives nil.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func withNS(s *specs.Spec, types ...specs.LinuxNamespaceType) {
	for _, t := range types {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
	}
}

func TestValidate(t *testing.T) {
	userNS := func(s *specs.Spec) {
		withNS(s, specs.UserNamespace)
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}}
	}
	tests := []struct {
		name   string
		mutate func(*specs.Spec)
		want   []string // every error line, in order; nil means valid
	}{
		{"base is valid", func(*specs.Spec) {}, nil},
		{"no process is valid", func(s *specs.Spec) { s.Process = nil }, nil},
		{"no linux section is valid", func(s *specs.Spec) { s.Linux = nil }, nil},
		{"prerelease version", func(s *specs.Spec) { s.Version = "1.0.2-dev" }, nil},
		{"build metadata", func(s *specs.Spec) { s.Version = "1.1.0+abc.1" }, nil},
		{"empty version", func(s *specs.Spec) { s.Version = "" }, []string{"ociVersion: must be set"}},
		{"version v prefix", func(s *specs.Spec) { s.Version = "v1.0.0" },
			[]string{`ociVersion: "v1.0.0" is not a semantic version: "v1" is not a number without leading zeros`}},
		{"version empty prerelease", func(s *specs.Spec) { s.Version = "1.0.0-" },
			[]string{`ociVersion: "1.0.0-" is not a semantic version: pre-release: empty identifier`}},
		{"version leading zero prerelease", func(s *specs.Spec) { s.Version = "1.0.0-01" },
			[]string{`ociVersion: "1.0.0-01" is not a semantic version: pre-release: identifier "01" has a leading zero`}},
		{"version bad build", func(s *specs.Spec) { s.Version = "1.0.0+a_b" },
			[]string{`ociVersion: "1.0.0+a_b" is not a semantic version: build metadata: identifier "a_b" has invalid characters`}},
		{"version major 0", func(s *specs.Spec) { s.Version = "0.9.0" },
			[]string{`ociVersion: "0.9.0": major version 0 is not supported (want 1)`}},
		{"no root", func(s *specs.Spec) { s.Root = nil }, []string{"root: must be set"}},
		{"empty args[0]", func(s *specs.Spec) { s.Process.Args = []string{"", "x"} },
			[]string{"process.args[0]: must not be empty"}},
		{"NUL in arg", func(s *specs.Spec) { s.Process.Args = []string{"sh", "a\x00b"} },
			[]string{"process.args[1]: contains a NUL byte"}},
		{"env empty name", func(s *specs.Spec) { s.Process.Env = []string{"=x"} },
			[]string{`process.env[0]: "=x" has an empty name`}},
		{"env empty value ok", func(s *specs.Spec) { s.Process.Env = []string{"A="} }, nil},
		{"umask 0777 ok", func(s *specs.Spec) { s.Process.User.Umask = ptr(uint32(0o777)) }, nil},
		{"umask 01000", func(s *specs.Spec) { s.Process.User.Umask = ptr(uint32(0o1000)) },
			[]string{"process.user.umask: 01000 is not a permission mask (max 0777)"}},
		{"consoleSize with terminal", func(s *specs.Spec) {
			s.Process.Terminal = true
			s.Process.ConsoleSize = &specs.Box{Height: 1, Width: 1}
		}, nil},
		{"rlimit infinity", func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Soft: 0, Hard: ^uint64(0)}}
		}, nil},
		{"rlimit freebsd name on linux", func(s *specs.Spec) {
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_SWAP"}}
		}, []string{`process.rlimits[0].type: unknown rlimit "RLIMIT_SWAP"`}},
		{"all capability sets checked", func(s *specs.Spec) {
			s.Process.Capabilities = &specs.LinuxCapabilities{
				Bounding: []string{"CAP_SYS_ADMIN"}, Effective: []string{"CAP_X"}, Inheritable: []string{"CAP_Y"},
				Permitted: []string{"CAP_BPF", "CAP_Z"}, Ambient: []string{"CAP_SYS_ADMIN", ""},
			}
		}, []string{
			`process.capabilities.effective[0]: unknown capability "CAP_X"`,
			`process.capabilities.inheritable[0]: unknown capability "CAP_Y"`,
			`process.capabilities.permitted[1]: unknown capability "CAP_Z"`,
			`process.capabilities.ambient[1]: unknown capability ""`,
		}},
		{"oomScoreAdj bounds ok", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-1000) }, nil},
		{"oomScoreAdj too low", func(s *specs.Spec) { s.Process.OOMScoreAdj = ptr(-1001) },
			[]string{"process.oomScoreAdj: -1001 is outside [-1000, 1000]"}},
		{"scheduler without policy", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Runtime: 5} },
			[]string{"process.scheduler.policy: must be set",
				"process.scheduler: runtime, deadline and period are only allowed with SCHED_DEADLINE"}},
		{"scheduler deadline", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedDeadline, Runtime: 1, Deadline: 2, Period: 3,
				Flags: []specs.LinuxSchedulerFlag{specs.SchedFlagReclaim}}
		}, nil},
		{"scheduler unknown flag", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{"X"}}
		}, []string{`process.scheduler.flags[0]: unknown flag "X"`}},
		{"ioPriority", func(s *specs.Spec) { s.Process.IOPriority = &specs.LinuxIOPriority{Class: "X", Priority: 8} },
			[]string{`process.ioPriority.class: unknown class "X"`, "process.ioPriority.priority: 8 is outside [0, 7]"}},
		{"mount destination empty", func(s *specs.Spec) { s.Mounts = []specs.Mount{{Type: "tmpfs"}} },
			[]string{"mounts[0].destination: must be set"}},
		{"mount destination with dotdot is cleaned later", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/../../etc", Type: "tmpfs", Source: "tmpfs"}}
		}, nil},
		{"bind by type needs source", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "bind"}}
		}, []string{"mounts[0].source: required for a bind mount"}},
		{"idmapped mount with only uid", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Source: "/y", Options: []string{"bind"},
				UIDMappings: []specs.LinuxIDMapping{{Size: 1}}}}
		}, []string{"mounts[0]: uidMappings and gidMappings must be set together"}},
		{"idmapped mount overflow", func(s *specs.Spec) {
			m := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 0xFFFFFFFF, Size: 1}}
			s.Mounts = []specs.Mount{{Destination: "/x", Source: "/y", Type: "bind", UIDMappings: m, GIDMappings: m}}
		}, []string{"mounts[0].uidMappings[0]: hostID range overflows", "mounts[0].gidMappings[0]: hostID range overflows"}},
		{"idmap tmpfs without a user namespace is the init's", func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Source: "tmpfs", Type: "tmpfs", Options: []string{"idmap"}}}
		}, nil},
		{"idmap bind in a user namespace", func(s *specs.Spec) {
			userNS(s)
			s.Mounts = []specs.Mount{{Destination: "/x", Source: "/y", Type: "bind", Options: []string{"rbind", "ridmap"}}}
		}, nil},
		{"idmap tmpfs in a user namespace", func(s *specs.Spec) {
			userNS(s)
			s.Mounts = []specs.Mount{
				{Destination: "/b", Source: "/y", Options: []string{"bind", "idmap"}},
				{Destination: "/x", Source: "tmpfs", Type: "tmpfs", Options: []string{"ridmap"}},
			}
		}, []string{"mounts[1]: an ID-mapped mount in a container with a user namespace must be a bind mount"}},
		{"hooks", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{
				CreateContainer: []specs.Hook{{Path: "/ok", Timeout: ptr(1)}, {Path: ""}},
				StartContainer:  []specs.Hook{{Path: "/ok", Env: []string{"NOEQ"}}},
			}
		}, []string{"hooks.createContainer[1].path: must be set", `hooks.startContainer[0].env[0]: "NOEQ" has no '='`}},
		{"hostname with joined uts", func(s *specs.Spec) {
			s.Hostname = "h"
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "uts", Path: "/proc/1/ns/uts"})
		}, nil},
		{"hostname too long", func(s *specs.Spec) { s.Hostname = strings.Repeat("h", 65); withNS(s, "uts") },
			[]string{"hostname: longer than 64 bytes"}},
		{"namespace type empty", func(s *specs.Spec) { s.Linux.Namespaces = []specs.LinuxNamespace{{}} },
			[]string{`linux.namespaces[0].type: unknown namespace type ""`}},
		{"all namespace types", func(s *specs.Spec) {
			withNS(s, "network", "ipc", "uts", "cgroup", "time")
			userNS(s)
		}, nil},
		{"new user ns with mappings", userNS, nil},
		{"joined user ns without mappings", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "user", Path: "/proc/1/ns/user"})
		}, nil},
		{"gid mappings without user ns", func(s *specs.Spec) {
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{Size: 1}}
		}, []string{"linux.gidMappings: set without a user namespace in linux.namespaces"}},
		{"mapping overlap on host side", func(s *specs.Spec) {
			userNS(s)
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}, {ContainerID: 100, HostID: 1009, Size: 1}}
		}, []string{"linux.uidMappings[1]: overlaps uidMappings[0]"}},
		{"mapping adjacent ranges ok", func(s *specs.Spec) {
			userNS(s)
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}, {ContainerID: 10, HostID: 1010, Size: 1}}
		}, nil},
		{"mapping containerID overflow", func(s *specs.Spec) {
			userNS(s)
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 1, HostID: 0, Size: 0xFFFFFFFF}}
		}, []string{"linux.gidMappings[0]: containerID range overflows"}},
		{"too many mappings", func(s *specs.Spec) {
			userNS(s)
			s.Linux.UIDMappings = make([]specs.LinuxIDMapping, 341)
		}, []string{"linux.uidMappings: 341 entries, the kernel allows at most 340"}},
		{"sysctls with their namespaces", func(s *specs.Spec) {
			withNS(s, "ipc", "uts")
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: "network", Path: "/run/netns/x"})
			s.Linux.Sysctl = map[string]string{
				"kernel.msgmnb": "1", "kernel.shm_next_id": "1", "kernel.sem": "1 2 3 4", "fs.mqueue.msgsize_max": "1",
				"net.core.somaxconn": "1", "kernel.hostname": "h", "kernel.domainname": "d",
			}
		}, nil},
		{"sysctl empty key and unknown kernel key", func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"": "1", "kernel.randomize_va_space": "0", "user.max_user_namespaces": "0"}
		}, []string{`linux.sysctl[""]: empty key`,
			`linux.sysctl["kernel.randomize_va_space"]: not a namespaced sysctl; refusing to change it for the host`,
			`linux.sysctl["user.max_user_namespaces"]: not a namespaced sysctl; refusing to change it for the host`}},
		{"sysctl domainname without uts", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel/domainname": "d"} },
			[]string{`linux.sysctl["kernel/domainname"]: needs a uts namespace in linux.namespaces`}},
		{"sysctl domainname matching field", func(s *specs.Spec) {
			withNS(s, "uts")
			s.Domainname = "d"
			s.Linux.Sysctl = map[string]string{"kernel.domainname": "d"}
		}, nil},
		{"time offsets nanosecs", func(s *specs.Spec) {
			withNS(s, "time")
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"boottime": {Nanosecs: 1_000_000_000}}
		}, []string{`linux.timeOffsets["boottime"].nanosecs: 1000000000 is not below 1000000000`}},
		{"devices all types", func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/a", Type: "c"}, {Path: "/dev/b", Type: "b"},
				{Path: "/dev/c", Type: "u"}, {Path: "/dev/d", Type: "p"}}
		}, nil},
		{"device empty path and type", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{}} },
			[]string{`linux.devices[0].type: "" is not one of c, b, u, p`, "linux.devices[0].path: must be set"}},
		{"all propagations", func(s *specs.Spec) {
			for _, p := range []string{"shared", "slave", "private", "unbindable", "rshared", "rslave", "rprivate", "runbindable"} {
				s.Linux.RootfsPropagation = p
				if err := Validate(s); err != nil {
					t.Errorf("propagation %q: %v", p, err)
				}
			}
		}, nil},
		{"readonly paths without mount ns", func(s *specs.Spec) {
			s.Linux.Namespaces = nil
			s.Linux.ReadonlyPaths = []string{"/proc/sys"}
		}, nil}, // without a mount namespace the paths are masked under the rootfs in the host's (runc does the same)
		{"personality LINUX", func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: "LINUX"} }, nil},
		{"device cgroup rules", func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
				{Allow: true, Type: "a", Access: "rwm"}, {Type: "x", Access: "rwx"},
			}}
		}, []string{`linux.resources.devices[1].type: "x" is not one of a, b, c`,
			`linux.resources.devices[1].access: "rwx" has letters other than r, w, m`}},
		{"seccomp", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno, Architectures: []specs.Arch{"SCMP_ARCH_Z80"},
				Syscalls: []specs.LinuxSyscall{{Action: "NOPE", Args: []specs.LinuxSeccompArg{{Index: 6, Op: "EQ"}}}},
			}
		}, []string{
			`linux.seccomp.architectures[0]: unknown architecture "SCMP_ARCH_Z80"`,
			"linux.seccomp.syscalls[0].names: must not be empty",
			`linux.seccomp.syscalls[0].action: unknown action "NOPE"`,
			`linux.seccomp.syscalls[0].args[0].op: unknown operator "EQ"`,
			"linux.seccomp.syscalls[0].args[0].index: 6 is above 5",
		}},
		{"intelRdt closID", func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{ClosID: "../x"} },
			[]string{`linux.intelRdt.closID: "../x" is not a valid resctrl group name`}},
		{"memory policy", func(s *specs.Spec) {
			s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{Mode: "MPOL_X", Flags: []specs.MemoryPolicyFlagType{specs.MpolFStaticNodes, "F"}}
		}, []string{`linux.memoryPolicy.mode: unknown mode "MPOL_X"`, `linux.memoryPolicy.flags[1]: unknown flag "F"`}},
		{"net devices", func(s *specs.Spec) {
			s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {Name: "eth0"}, "a/b": {}, "ok": {Name: strings.Repeat("x", 16)}}
		}, []string{`linux.netDevices["a/b"]: not a valid interface name`,
			`linux.netDevices["ok"].name: "xxxxxxxxxxxxxxxx" is not a valid interface name`}},
		{"freebsd spec skips linux namespace rules", func(s *specs.Spec) {
			s.Linux = nil
			s.FreeBSD = &specs.FreeBSD{Jail: &specs.FreeBSDJail{Host: specs.FreeBSDShareNew}}
			s.Hostname = "jail"
			s.Process.Rlimits = []specs.POSIXRlimit{{Type: "RLIMIT_NPTS", Soft: 1, Hard: 1}}
		}, nil},
		{"freebsd devices", func(s *specs.Spec) {
			s.Linux = nil
			s.FreeBSD = &specs.FreeBSD{
				Devices: []specs.FreeBSDDevice{{Path: "pts/../null"}, {Path: ""}, {Path: "../etc/passwd"}, {Path: "a/../../x"}},
				Jail:    &specs.FreeBSDJail{EnforceStatfs: ptr(3)},
			}
		}, []string{
			"freebsd.devices[1].path: must be set",
			`freebsd.devices[2].path: "../etc/passwd" is not inside /dev`,
			`freebsd.devices[3].path: "a/../../x" is not inside /dev`,
			"freebsd.jail.enforceStatfs: 3 is outside [0, 2]",
		}},
		{"linux and freebsd sections: linux rules apply", func(s *specs.Spec) {
			s.FreeBSD = &specs.FreeBSD{}
			s.Hostname = "h"
		}, []string{"hostname: needs a uts namespace in linux.namespaces"}},
		{"freebsd section, linux section with resources only: a FreeBSD config", func(s *specs.Spec) {
			s.FreeBSD = &specs.FreeBSD{}
			s.Linux = &specs.Linux{Resources: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr(int64(10))}}}
			s.Hostname = "h"
		}, nil},
		{"annotations", func(s *specs.Spec) { s.Annotations = map[string]string{"a": "", "": "b"} },
			[]string{"annotations: empty key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := baseSpec()
			tt.mutate(s)
			err := Validate(s)
			if diff := cmp.Diff(tt.want, errLines(err)); diff != "" {
				t.Errorf("Validate errors (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil); err == nil {
		t.Fatal("Validate(nil) accepted")
	}
}

// TestValidateJoined checks that problems stay individually reachable through errors.Join.
func TestValidateJoined(t *testing.T) {
	s := baseSpec()
	s.Version = ""
	s.Process.Cwd = "rel"
	err := Validate(s)
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("Validate error %T is not a joined error", err)
	}
	if got := len(j.Unwrap()); got != 2 {
		t.Errorf("got %d joined errors, want 2: %v", got, err)
	}
	if errors.Unwrap(err) != nil {
		t.Errorf("unexpected single unwrap chain on %v", err)
	}
}

func TestSysctlDots(t *testing.T) {
	tests := []struct{ in, want string }{
		{"net.ipv4.ip_forward", "net.ipv4.ip_forward"},
		{"net/ipv4/ip_forward", "net.ipv4.ip_forward"},
		{"net/ipv4/conf/eno2.100/rp_filter", "net.ipv4.conf.eno2/100.rp_filter"},
		{"net.ipv4.conf.eno2/100.rp_filter", "net.ipv4.conf.eno2/100.rp_filter"},
		{"kernel", "kernel"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := sysctlDots(tt.in); got != tt.want {
			t.Errorf("sysctlDots(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
