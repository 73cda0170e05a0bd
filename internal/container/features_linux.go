//go:build linux

package container

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/knast/knast/internal/container/linux"
	"github.com/knast/knast/internal/container/linux/seccomp"
)

// features reports what the Linux backend implements; clients (containerd 2.x) decide from it what they
// may ask for, so nothing is listed that does not work.
func (b *linuxBackend) features() *features.Features {
	yes := true
	no := false
	aa, se := linux.LSMEnabled()
	idmap := linux.IDMapSupported()
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  linux.MountOptionNames(),
		Linux: &features.Linux{
			Namespaces: []string{
				string(specs.CgroupNamespace), string(specs.IPCNamespace), string(specs.MountNamespace),
				string(specs.NetworkNamespace), string(specs.PIDNamespace), string(specs.TimeNamespace),
				string(specs.UserNamespace), string(specs.UTSNamespace),
			},
			Capabilities: linux.CapabilityNames(),
			// The systemd driver is refused (see --systemd-cgroup).
			Cgroup:   &features.Cgroup{V1: &yes, V2: &yes, Systemd: &no, SystemdUser: &no, Rdma: &yes},
			Seccomp:  seccompFeatures(),
			Apparmor: &features.Apparmor{Enabled: &aa},
			Selinux:  &features.Selinux{Enabled: &se},
			IntelRdt: &features.IntelRdt{Enabled: &no},
			// idmap and ridmap: any filesystem that allows it without a user namespace, bind mounts with
			// one (as runc). containerd 2.x reads this as "ID-mapped volumes for hostUsers: false pods".
			MountExtensions: &features.MountExtensions{IDMap: &features.IDMap{Enabled: &idmap}},
		},
		Annotations: map[string]string{
			"io.github.seccomp.libseccomp.version": seccomp.Version(),
		},
	}
}

// seccompFeatures reports what this host's libseccomp and kernel accept.
func seccompFeatures() *features.Seccomp {
	actions, archs, flags, ops := seccomp.Supported()
	enabled := len(actions) > 0
	return &features.Seccomp{
		Enabled: &enabled, Actions: actions, Operators: ops, Archs: archs,
		KnownFlags: flags, SupportedFlags: flags,
	}
}
