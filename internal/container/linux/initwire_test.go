package linux

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// TestInitWire checks that every field of the runtime-spec's Spec and Linux is either carried to the
// init or named as the parent's, so that a new runtime-spec field cannot silently miss the init, and
// that what is carried survives the round trip.
func TestInitWire(t *testing.T) {
	for _, tc := range []struct {
		typ        reflect.Type
		wire       reflect.Type
		parentOnly []string
	}{
		{typ: reflect.TypeFor[specs.Spec](), wire: reflect.TypeFor[initWireSpec](),
			parentOnly: []string{"Solaris", "Windows", "VM", "ZOS", "FreeBSD"}},
		{typ: reflect.TypeFor[specs.Linux](), wire: reflect.TypeFor[initWireLinux](),
			parentOnly: []string{"Resources", "CgroupsPath", "NetDevices", "Seccomp", "IntelRdt", "MemoryPolicy"}},
		{typ: reflect.TypeFor[InitConfig](), wire: reflect.TypeFor[initWire]()},
	} {
		for f := range tc.typ.Fields() {
			_, carried := tc.wire.FieldByName(f.Name)
			parent := slices.Contains(tc.parentOnly, f.Name)
			switch {
			case carried && parent:
				t.Errorf("%s.%s: both carried and the parent's", tc.typ, f.Name)
			case !carried && !parent:
				t.Errorf("%s.%s: neither carried to the init nor named the parent's", tc.typ, f.Name)
			}
		}
	}

	uid, pids := uint32(5), int64(5)
	in := &InitConfig{
		ID: "c", Rootfs: "/r", FifoFd: 7, NoPivot: true, NoNewKeyring: true, PreserveFds: 2, ConsoleFd: -1,
		UserNS: true, IDMapFds: map[int]int{0: 9}, Exec: true, State: specs.State{ID: "c", Status: specs.StateCreating, Pid: 9},
		Spec: &specs.Spec{
			Version: "1.3.0", Hostname: "h", Domainname: "d",
			Process:     &specs.Process{Args: []string{"sh"}, User: specs.User{UID: uid}, Capabilities: &specs.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}},
			Root:        &specs.Root{Path: "rootfs", Readonly: true},
			Mounts:      []specs.Mount{{Destination: "/proc", Type: "proc", Source: "proc"}},
			Hooks:       &specs.Hooks{StartContainer: []specs.Hook{{Path: "/bin/true"}}},
			Annotations: map[string]string{"a": "b"},
			Linux: &specs.Linux{
				UIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
				GIDMappings:       []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 1}},
				Sysctl:            map[string]string{"net.ipv4.ip_forward": "1"},
				Namespaces:        []specs.LinuxNamespace{{Type: specs.PIDNamespace}, {Type: specs.NetworkNamespace, Path: "/n"}},
				Devices:           []specs.LinuxDevice{{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}},
				RootfsPropagation: "slave", MaskedPaths: []string{"/proc/kcore"}, ReadonlyPaths: []string{"/proc/sys"},
				MountLabel: "l", Personality: &specs.LinuxPersonality{Domain: specs.PerLinux32},
				TimeOffsets: map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 3}},
				Seccomp:     &specs.LinuxSeccomp{DefaultAction: specs.ActErrno},
				Resources:   &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: &pids}},
				CgroupsPath: "/x",
			},
		},
	}
	b, err := json.Marshal(Message{Type: MsgConfig, Config: in})
	if err != nil {
		t.Fatal(err)
	}
	var m Message
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := *in
	wantSpec := *in.Spec
	wantLinux := *in.Spec.Linux
	wantLinux.Resources, wantLinux.CgroupsPath = nil, ""
	wantLinux.Seccomp = &specs.LinuxSeccomp{} // presence only
	wantSpec.Linux = &wantLinux
	want.Spec = &wantSpec
	if !reflect.DeepEqual(m.Config, &want) {
		t.Errorf("round trip:\n got %+v\nwant %+v", m.Config.Spec.Linux, want.Spec.Linux)
	}
	if !reflect.DeepEqual(m.Config.Spec.Process, in.Spec.Process) || !reflect.DeepEqual(m.Config.State, in.State) {
		t.Errorf("process or state changed: %+v %+v", m.Config.Spec.Process, m.Config.State)
	}
}
