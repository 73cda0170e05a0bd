package cgroups

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// freezeTimeout bounds how long Freeze and Thaw wait for the kernel to settle.
const freezeTimeout = 5 * time.Second

// Freeze stops every task of the cgroup and returns once the kernel reports it frozen: v1
// freezer.state FROZEN, or cgroup2 cgroup.events "frozen 1".
func (c *Cgroup) Freeze() error { return c.setFrozen(true) }

// Thaw resumes the cgroup's tasks.
func (c *Cgroup) Thaw() error { return c.setFrozen(false) }

func (c *Cgroup) setFrozen(frozen bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), freezeTimeout)
	defer cancel()
	if d := c.v1DirFor("freezer"); d != "" {
		p := filepath.Join(d, "freezer.state")
		want := "THAWED"
		if frozen {
			want = "FROZEN"
		}
		for i := 0; ; i++ {
			// Re-writing FROZEN retries tasks that were not freezable yet (e.g. in vfork).
			if i%20 == 0 {
				if err := writeFile(p, want); err != nil {
					return &fileError{field: "freeze", path: p, err: err}
				}
			}
			got, err := readFile(p)
			if err != nil {
				return &fileError{field: "freeze", path: p, err: err}
			}
			if strings.TrimSpace(got) == want {
				return nil
			}
			if ctx.Err() != nil {
				if frozen {
					_ = writeFile(p, "THAWED")
				}
				return fmt.Errorf("%s: still %s after %s", p, strings.TrimSpace(got), freezeTimeout)
			}
			time.Sleep(time.Millisecond)
		}
	}
	if c.v2 == "" {
		return errors.New("freeze: no freezer: neither the v1 freezer controller nor cgroup2 is mounted")
	}
	p := filepath.Join(c.v2, "cgroup.freeze")
	v := "0"
	if frozen {
		v = "1"
	}
	if err := writeFile(p, v); err != nil {
		return &fileError{field: "freeze", path: p, err: err}
	}
	for {
		f, err := c.v2Frozen()
		if err != nil {
			return err
		}
		if f == frozen {
			return nil
		}
		if ctx.Err() != nil {
			if frozen {
				_ = writeFile(p, "0")
			}
			return fmt.Errorf("%s: frozen state did not become %v after %s", filepath.Join(c.v2, "cgroup.events"), frozen, freezeTimeout)
		}
		time.Sleep(time.Millisecond)
	}
}

func (c *Cgroup) v2Frozen() (bool, error) {
	p := filepath.Join(c.v2, "cgroup.events")
	s, err := readFile(p)
	if err != nil {
		return false, &fileError{path: p, err: err}
	}
	kv, err := parseKeyValues(s)
	if err != nil {
		return false, fmt.Errorf("%s: %w", p, err)
	}
	return kv["frozen"] == 1, nil
}

// Frozen reports whether the cgroup is frozen (a v1 cgroup still FREEZING is not).
func (c *Cgroup) Frozen() (bool, error) {
	if d := c.v1DirFor("freezer"); d != "" {
		p := filepath.Join(d, "freezer.state")
		s, err := readFile(p)
		if err != nil {
			if errors.Is(err, unix.ENOENT) {
				return false, nil
			}
			return false, &fileError{path: p, err: err}
		}
		return strings.TrimSpace(s) == "FROZEN", nil
	}
	if c.v2 == "" {
		return false, nil
	}
	f, err := c.v2Frozen()
	if errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return f, err
}
