//go:build !linux

package cgroups

import (
	"context"
	"errors"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// New fails: cgroups exist only on Linux.
func New(path string) (*Cgroup, error) { return nil, errors.ErrUnsupported }

// Exists is false off Linux.
func Exists(path string) bool { return false }

// Create is unsupported off Linux.
func (c *Cgroup) Create(r *specs.LinuxResources) error { return errors.ErrUnsupported }

// Enter is unsupported off Linux.
func (c *Cgroup) Enter(pid int) error { return errors.ErrUnsupported }

// V2Dir is unsupported off Linux.
func (c *Cgroup) V2Dir() (*os.File, error) { return nil, errors.ErrUnsupported }

// Update is unsupported off Linux.
func (c *Cgroup) Update(r *specs.LinuxResources) error { return errors.ErrUnsupported }

// Pids is unsupported off Linux.
func (c *Cgroup) Pids() ([]int, error) { return nil, errors.ErrUnsupported }

// Freeze is unsupported off Linux.
func (c *Cgroup) Freeze() error { return errors.ErrUnsupported }

// Thaw is unsupported off Linux.
func (c *Cgroup) Thaw() error { return errors.ErrUnsupported }

// Frozen is unsupported off Linux.
func (c *Cgroup) Frozen() (bool, error) { return false, errors.ErrUnsupported }

// Stats is unsupported off Linux.
func (c *Cgroup) Stats() (*Stats, error) { return nil, errors.ErrUnsupported }

// OOMEvents is unsupported off Linux.
func (c *Cgroup) OOMEvents(ctx context.Context) (<-chan struct{}, error) {
	return nil, errors.ErrUnsupported
}

// Destroy is unsupported off Linux.
func (c *Cgroup) Destroy() error { return errors.ErrUnsupported }
