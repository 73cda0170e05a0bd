package container

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/store"
)

// Pause freezes every process of a running container.
func (m *Manager) Pause(ctx context.Context, id string) error {
	rec, s, rc, err := m.running(ctx, id)
	if err != nil {
		return err
	}
	if err := rc.Freeze(); err != nil {
		return fmt.Errorf("pause %s: %w", id, err)
	}
	return m.setStatus(ctx, &rec, s, statePaused)
}

// Resume thaws a paused container.
func (m *Manager) Resume(ctx context.Context, id string) error {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return err
	}
	if st := m.status(&rec); st != statePaused {
		return fmt.Errorf("container %s is %s, not paused: %w", id, st, ErrWrongState)
	}
	s, err := recSpec(&rec)
	if err != nil {
		return err
	}
	rc, err := m.backend.resources(&rec, s)
	if err != nil {
		return err
	}
	if err := rc.Thaw(); err != nil {
		return fmt.Errorf("resume %s: %w", id, err)
	}
	return m.setStatus(ctx, &rec, s, specs.StateRunning)
}

func (m *Manager) setStatus(ctx context.Context, rec *store.Container, _ *specs.Spec, st specs.ContainerState) error {
	return m.store.UpdateContainer(ctx, rec.ID, func(c *store.Container) error {
		c.Status = string(st)
		return nil
	})
}

// running loads a container that must be created or running, with its resource group.
func (m *Manager) running(ctx context.Context, id string) (store.Container, *specs.Spec, resourceCtl, error) {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return rec, nil, nil, err
	}
	switch st := m.status(&rec); st {
	case specs.StateRunning, specs.StateCreated:
	default:
		return rec, nil, nil, fmt.Errorf("container %s is %s: %w", id, st, ErrNotRunning)
	}
	s, err := recSpec(&rec)
	if err != nil {
		return rec, nil, nil, err
	}
	rc, err := m.backend.resources(&rec, s)
	return rec, s, rc, err
}

// Processes lists the host pids of a container's processes.
func (m *Manager) Processes(ctx context.Context, id string) ([]int, error) {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return nil, err
	}
	if m.status(&rec) == specs.StateStopped {
		return nil, fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	s, err := recSpec(&rec)
	if err != nil {
		return nil, err
	}
	return m.backend.processes(&rec, s)
}

// Update changes a container's resource limits and records them in its config.
func (m *Manager) Update(ctx context.Context, id string, r *specs.LinuxResources) error {
	rec, s, rc, err := m.running(ctx, id)
	if err != nil {
		if rec.ID == "" || m.status(&rec) != statePaused {
			return err
		}
		// A paused container may be updated too.
		if s, err = recSpec(&rec); err != nil {
			return err
		}
		if rc, err = m.backend.resources(&rec, s); err != nil {
			return err
		}
	}
	if s.Linux == nil {
		s.Linux = &specs.Linux{} // a FreeBSD config keeps its limits in linux.resources too
	}
	merged := mergeResources(s.Linux.Resources, r)
	if err := rc.Update(merged); err != nil {
		return err
	}
	s.Linux.Resources = merged
	cfg, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return m.store.UpdateContainer(ctx, id, func(c *store.Container) error {
		c.Config = cfg
		return nil
	})
}

// mergeResources overlays the fields an update sets on the current resources, as runc's update does.
func mergeResources(cur, upd *specs.LinuxResources) *specs.LinuxResources {
	out := &specs.LinuxResources{}
	if cur != nil {
		b, _ := json.Marshal(cur)
		json.Unmarshal(b, out)
	}
	if upd == nil {
		return out
	}
	if upd.Memory != nil {
		if out.Memory == nil {
			out.Memory = &specs.LinuxMemory{}
		}
		u, o := upd.Memory, out.Memory
		setIf(&o.Limit, u.Limit)
		setIf(&o.Reservation, u.Reservation)
		setIf(&o.Swap, u.Swap)
		setIf(&o.Kernel, u.Kernel)
		setIf(&o.KernelTCP, u.KernelTCP)
		if u.Swappiness != nil {
			o.Swappiness = u.Swappiness
		}
		if u.CheckBeforeUpdate != nil {
			o.CheckBeforeUpdate = u.CheckBeforeUpdate
		}
	}
	if upd.CPU != nil {
		if out.CPU == nil {
			out.CPU = &specs.LinuxCPU{}
		}
		u, o := upd.CPU, out.CPU
		if u.Shares != nil {
			o.Shares = u.Shares
		}
		setIf(&o.Quota, u.Quota)
		if u.Period != nil {
			o.Period = u.Period
		}
		setIf(&o.RealtimeRuntime, u.RealtimeRuntime)
		if u.RealtimePeriod != nil {
			o.RealtimePeriod = u.RealtimePeriod
		}
		if u.Cpus != "" {
			o.Cpus = u.Cpus
		}
		if u.Mems != "" {
			o.Mems = u.Mems
		}
		if u.Idle != nil {
			o.Idle = u.Idle
		}
	}
	if upd.Pids != nil {
		out.Pids = upd.Pids
	}
	if upd.BlockIO != nil {
		out.BlockIO = upd.BlockIO
	}
	if upd.HugepageLimits != nil {
		out.HugepageLimits = upd.HugepageLimits
	}
	if upd.Network != nil {
		out.Network = upd.Network
	}
	if upd.Rdma != nil {
		out.Rdma = upd.Rdma
	}
	if upd.Unified != nil {
		if out.Unified == nil {
			out.Unified = map[string]string{}
		}
		for k, v := range upd.Unified {
			out.Unified[k] = v
		}
	}
	if upd.Devices != nil {
		out.Devices = upd.Devices
	}
	return out
}

func setIf(dst **int64, v *int64) {
	if v != nil {
		*dst = v
	}
}

// Event is one line of `knast events`: runc's JSON.
type Event struct {
	Type string `json:"type"`
	ID   string `json:"id"`
	Data any    `json:"data,omitempty"`
}

// Events reports stats every interval (once, with once set) and OOM kills, until the container stops or
// ctx ends.
func (m *Manager) Events(ctx context.Context, id string, interval time.Duration, once bool, emit func(Event) error) error {
	rec, _, rc, err := m.running(ctx, id)
	if err != nil && (rec.ID == "" || m.status(&rec) != statePaused) {
		return err
	}
	if rc == nil {
		s, err := recSpec(&rec)
		if err != nil {
			return err
		}
		if rc, err = m.backend.resources(&rec, s); err != nil {
			return err
		}
	}
	stats := func() error {
		st, err := rc.Stats()
		if err != nil {
			return err
		}
		return emit(Event{Type: "stats", ID: id, Data: st})
	}
	if once {
		return stats()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	oom, err := rc.OOMEvents(ctx)
	if err != nil {
		m.log.Warn("oom events unavailable", "id", id, "err", err)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	if err := stats(); err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-oom:
			if !ok {
				oom = nil
				continue
			}
			if err := emit(Event{Type: "oom", ID: id}); err != nil {
				return err
			}
		case <-tick.C:
			if !ProcAlive(rec.Pid, rec.PidStart) {
				return nil
			}
			if err := stats(); err != nil {
				return err
			}
		}
	}
}
