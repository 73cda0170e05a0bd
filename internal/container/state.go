package container

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/store"
)

// State is what `knast state` and `knast list --format json` print: runc's shape, which clients parse.
type State struct {
	OCIVersion  string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

func (m *Manager) stateOf(rec *store.Container) State {
	st := m.status(rec)
	pid := rec.Pid
	if st == specs.StateStopped {
		pid = 0 // runc reports no pid for a stopped container
	}
	return State{
		OCIVersion: specs.Version, ID: rec.ID, Pid: pid, Status: string(st), Bundle: rec.Bundle,
		Rootfs: rec.Rootfs, Created: rec.Created, Owner: rec.Owner, Annotations: rec.Annotations,
	}
}

// stateFor is the runtime-spec state given to hooks.
func stateFor(rec *store.Container, st specs.ContainerState) specs.State {
	return specs.State{
		Version: specs.Version, ID: rec.ID, Status: st, Pid: rec.Pid, Bundle: rec.Bundle,
		Annotations: rec.Annotations,
	}
}
