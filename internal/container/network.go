package container

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Networker connects containers to networks on the runtime's behalf, for bundles whose annotations ask for
// it. The lifecycle does not know networks: cmd/knast passes one in (over internal/network), so this
// package keeps importing neither the network code nor its store.
type Networker interface {
	// Wants reports whether annotations ask for a network (and so for Attach and Detach).
	Wants(annotations map[string]string) bool
	// Attach connects the container before its process starts. It must undo its own partial work on error.
	Attach(ctx context.Context, t NetworkTarget) error
	// Detach releases everything Attach made for the container; nothing attached is not an error, so it
	// also cleans up after a crash at any point of create.
	Detach(ctx context.Context, id string, annotations map[string]string) error
}

// NetworkTarget is the container an Attach connects.
type NetworkTarget struct {
	ID          string
	Annotations map[string]string
	// NetNS is the path of the container's network namespace on Linux (/proc/PID/ns/net, or the config's
	// path), the name of its VNET jail on FreeBSD.
	NetNS string
	// Rootfs is the host path of the container's root; Hostname is the config's hostname.
	Rootfs   string
	Hostname string
}

// SetNetworker makes m attach and detach networks for containers whose annotations ask for one.
func (m *Manager) SetNetworker(n Networker) { m.net = n }

// attachNetwork connects a freshly created container when its config asks for a network.
func (m *Manager) attachNetwork(ctx context.Context, id string, pid int, rootfs string, s *specs.Spec) error {
	if m.net == nil || !m.net.Wants(s.Annotations) {
		return nil
	}
	netns, err := networkNamespace(id, s, pid)
	if err != nil {
		return err
	}
	return m.net.Attach(ctx, NetworkTarget{ID: id, Annotations: s.Annotations, NetNS: netns, Rootfs: rootfs, Hostname: s.Hostname})
}

// detachNetwork releases a container's networks; with force a failure is logged and the delete goes on.
func (m *Manager) detachNetwork(ctx context.Context, id string, annotations map[string]string, force bool) error {
	if m.net == nil || !m.net.Wants(annotations) {
		return nil
	}
	err := m.net.Detach(ctx, id, annotations)
	if err != nil && force {
		m.log.Warn("network left attached", "id", id, "err", err)
		return nil
	}
	return err
}

// hasNamespace reports whether list holds a namespace of type t (new or joined).
func hasNamespace(list []specs.LinuxNamespace, t specs.LinuxNamespaceType) bool {
	for _, ns := range list {
		if ns.Type == t {
			return true
		}
	}
	return false
}
