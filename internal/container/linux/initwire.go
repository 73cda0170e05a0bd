package linux

import (
	"encoding/json"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/container/linux/seccomp"
)

// InitConfig crosses the sync socket as initWire: the config without the parts the init never reads.
//
// encoding/json builds the codecs of a type's whole graph the first time it meets the type, also to
// decode, and specs.Spec's graph is most of the runtime-spec (linux.resources, linux.seccomp, the other
// platforms): about a millisecond in the init, a fresh process on the create's path. The wire types
// below reach only what the init uses; linux.resources, cgroupsPath, intelRdt, memoryPolicy and
// netDevices are the parent's, and linux.seccomp arrives compiled (InitConfig.Seccomp). TestInitWire
// holds the list of what is carried and what is left to the parent against the runtime-spec's fields.
type initWire struct {
	ID           string          `json:"id"`
	Spec         *initWireSpec   `json:"spec"`
	Rootfs       string          `json:"rootfs"`
	FifoFd       int             `json:"fifoFd"`
	NoPivot      bool            `json:"noPivot,omitempty"`
	NoNewKeyring bool            `json:"noNewKeyring,omitempty"`
	PreserveFds  int             `json:"preserveFds,omitempty"`
	ConsoleFd    int             `json:"consoleFd"`
	UserNS       bool            `json:"userNS,omitempty"`
	IDMapFds     map[int]int     `json:"idmapFds,omitempty"`
	State        specs.State     `json:"state"`
	Seccomp      *seccomp.Filter `json:"seccomp,omitempty"`
	Exec         bool            `json:"exec,omitempty"`
}

type initWireSpec struct {
	Version     string            `json:"ociVersion"`
	Process     *specs.Process    `json:"process,omitempty"`
	Root        *specs.Root       `json:"root,omitempty"`
	Hostname    string            `json:"hostname,omitempty"`
	Domainname  string            `json:"domainname,omitempty"`
	Mounts      []specs.Mount     `json:"mounts,omitempty"`
	Hooks       *specs.Hooks      `json:"hooks,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Linux       *initWireLinux    `json:"linux,omitempty"`
}

type initWireLinux struct {
	UIDMappings       []specs.LinuxIDMapping           `json:"uidMappings,omitempty"`
	GIDMappings       []specs.LinuxIDMapping           `json:"gidMappings,omitempty"`
	Sysctl            map[string]string                `json:"sysctl,omitempty"`
	Namespaces        []specs.LinuxNamespace           `json:"namespaces,omitempty"`
	Devices           []specs.LinuxDevice              `json:"devices,omitempty"`
	RootfsPropagation string                           `json:"rootfsPropagation,omitempty"`
	MaskedPaths       []string                         `json:"maskedPaths,omitempty"`
	ReadonlyPaths     []string                         `json:"readonlyPaths,omitempty"`
	MountLabel        string                           `json:"mountLabel,omitempty"`
	Personality       *specs.LinuxPersonality          `json:"personality,omitempty"`
	TimeOffsets       map[string]specs.LinuxTimeOffset `json:"timeOffsets,omitempty"`
	// HasSeccomp says linux.seccomp was set: the init refuses to go on without its compiled filter.
	HasSeccomp bool `json:"hasSeccomp,omitempty"`
}

// MarshalJSON encodes c as initWire.
func (c *InitConfig) MarshalJSON() ([]byte, error) {
	w := initWire{
		ID: c.ID, Rootfs: c.Rootfs, FifoFd: c.FifoFd, NoPivot: c.NoPivot, NoNewKeyring: c.NoNewKeyring,
		PreserveFds: c.PreserveFds, ConsoleFd: c.ConsoleFd, UserNS: c.UserNS, IDMapFds: c.IDMapFds,
		State: c.State, Seccomp: c.Seccomp, Exec: c.Exec,
	}
	if s := c.Spec; s != nil {
		w.Spec = &initWireSpec{
			Version: s.Version, Process: s.Process, Root: s.Root, Hostname: s.Hostname,
			Domainname: s.Domainname, Mounts: s.Mounts, Hooks: s.Hooks, Annotations: s.Annotations,
		}
		if l := s.Linux; l != nil {
			w.Spec.Linux = &initWireLinux{
				UIDMappings: l.UIDMappings, GIDMappings: l.GIDMappings, Sysctl: l.Sysctl,
				Namespaces: l.Namespaces, Devices: l.Devices, RootfsPropagation: l.RootfsPropagation,
				MaskedPaths: l.MaskedPaths, ReadonlyPaths: l.ReadonlyPaths, MountLabel: l.MountLabel,
				Personality: l.Personality, TimeOffsets: l.TimeOffsets, HasSeccomp: l.Seccomp != nil,
			}
		}
	}
	return json.Marshal(&w)
}

// UnmarshalJSON decodes an initWire into c; the spec holds what the wire carried.
func (c *InitConfig) UnmarshalJSON(b []byte) error {
	var w initWire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*c = InitConfig{
		ID: w.ID, Rootfs: w.Rootfs, FifoFd: w.FifoFd, NoPivot: w.NoPivot, NoNewKeyring: w.NoNewKeyring,
		PreserveFds: w.PreserveFds, ConsoleFd: w.ConsoleFd, UserNS: w.UserNS, IDMapFds: w.IDMapFds,
		State: w.State, Seccomp: w.Seccomp, Exec: w.Exec,
	}
	if ws := w.Spec; ws != nil {
		c.Spec = &specs.Spec{
			Version: ws.Version, Process: ws.Process, Root: ws.Root, Hostname: ws.Hostname,
			Domainname: ws.Domainname, Mounts: ws.Mounts, Hooks: ws.Hooks, Annotations: ws.Annotations,
		}
		if wl := ws.Linux; wl != nil {
			c.Spec.Linux = &specs.Linux{
				UIDMappings: wl.UIDMappings, GIDMappings: wl.GIDMappings, Sysctl: wl.Sysctl,
				Namespaces: wl.Namespaces, Devices: wl.Devices, RootfsPropagation: wl.RootfsPropagation,
				MaskedPaths: wl.MaskedPaths, ReadonlyPaths: wl.ReadonlyPaths, MountLabel: wl.MountLabel,
				Personality: wl.Personality, TimeOffsets: wl.TimeOffsets,
			}
			if wl.HasSeccomp {
				// Only its presence crosses: the filter itself is InitConfig.Seccomp.
				c.Spec.Linux.Seccomp = &specs.LinuxSeccomp{}
			}
		}
	}
	return nil
}
