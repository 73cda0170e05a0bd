package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ExecOptions are the flags of `knast exec`.
type ExecOptions struct {
	ProcessFile   string   // --process: a runtime-spec process JSON; else Args and the overrides below
	Args          []string // the command and its arguments
	Env           []string // --env, appended
	Cwd           string
	User          string // "uid[:gid]"
	AdditionalGid []uint32
	Caps          []string
	NoNewPrivs    bool
	Tty           bool
	AppArmor      string
	ProcessLabel  string
	IgnorePaused  bool

	PidFile       string
	ConsoleSocket string
	Detach        bool
	PreserveFds   int
	Stdin         *os.File
	Stdout        *os.File
	Stderr        *os.File
}

// Exec runs a new process in a container's namespaces with the container's security settings. Detached,
// it returns once the process runs; otherwise it waits and returns the process's exit status.
func (m *Manager) Exec(ctx context.Context, id string, o ExecOptions) (int, error) {
	rec, err := m.store.Container(ctx, id)
	if err != nil {
		return -1, err
	}
	switch st := m.status(&rec); st {
	case specs.StateStopped, specs.StateCreating:
		return -1, fmt.Errorf("cannot exec in a %s container %s: %w", st, id, ErrNotRunning)
	case statePaused:
		if !o.IgnorePaused {
			return -1, fmt.Errorf("cannot exec in a paused container %s (use --ignore-paused)", id)
		}
	}
	s, err := recSpec(&rec)
	if err != nil {
		return -1, err
	}
	p, err := execProcess(s.Process, o)
	if err != nil {
		return -1, err
	}
	con, err := newOwnConsole(p.Terminal && o.ConsoleSocket == "", o.Detach)
	if err != nil {
		return -1, err
	}
	defer con.close()
	if con != nil {
		o.ConsoleSocket = con.path()
	}
	s.Process = p
	pid, err := m.backend.exec(ctx, &execRequest{Rec: &rec, Spec: s, Opts: o})
	if err != nil {
		// A killed init loses its namespaces and sockets a moment before /proc shows it dead. An error
		// the init reported itself (a missing binary, a bad cwd) is the process's, not a race.
		var own initReported
		if !errors.As(err, &own) && exitsWithin(ctx, &rec, 200*time.Millisecond) {
			// The container stopped (another client's kill) while the exec joined it.
			m.log.Debug("exec: container stopped", "id", id, "err", err)
			return -1, fmt.Errorf("cannot exec in a stopped container %s: %w", id, ErrNotRunning)
		}
		return -1, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, pid); err != nil {
			return -1, err
		}
	}
	if o.Detach {
		return 0, nil
	}
	sigc := forwardSignals()
	defer signal.Stop(sigc)
	proxyDone := con.proxy(ctx)
	status, err := waitChild(pid, sigc)
	<-proxyDone
	return status, err
}

// execProcess builds the exec'd process like runc: from --process, or from the container's process with
// the command line's overrides.
func execProcess(base *specs.Process, o ExecOptions) (*specs.Process, error) {
	if o.ProcessFile != "" {
		b, err := os.ReadFile(o.ProcessFile)
		if err != nil {
			return nil, fmt.Errorf("--process: %w", err)
		}
		var p specs.Process
		if err := json.Unmarshal(b, &p); err != nil {
			return nil, fmt.Errorf("--process %s: %w", o.ProcessFile, err)
		}
		if len(p.Args) == 0 {
			return nil, fmt.Errorf("--process %s: args: must not be empty", o.ProcessFile)
		}
		if p.Cwd == "" {
			p.Cwd = "/"
		}
		return &p, nil
	}
	if len(o.Args) == 0 {
		return nil, errors.New("exec: a command is required (or --process)")
	}
	var p specs.Process
	if base != nil {
		// A deep copy through JSON: the overrides must not alias the stored config.
		b, _ := json.Marshal(base)
		json.Unmarshal(b, &p)
	}
	p.Args = o.Args
	p.Terminal = o.Tty
	p.ConsoleSize = nil
	p.Env = append(p.Env, o.Env...)
	if o.Cwd != "" {
		p.Cwd = o.Cwd
	}
	if p.Cwd == "" {
		p.Cwd = "/"
	}
	if o.User != "" {
		uid, gid, hasGid := strings.Cut(o.User, ":")
		u, err := strconv.ParseUint(uid, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("exec: --user %q: uid must be a number", o.User)
		}
		p.User.UID = uint32(u)
		if hasGid {
			g, err := strconv.ParseUint(gid, 10, 32)
			if err != nil {
				return nil, fmt.Errorf("exec: --user %q: gid must be a number", o.User)
			}
			p.User.GID = uint32(g)
		}
	}
	p.User.AdditionalGids = append(p.User.AdditionalGids, o.AdditionalGid...)
	if o.NoNewPrivs {
		p.NoNewPrivileges = true
	}
	if o.AppArmor != "" {
		p.ApparmorProfile = o.AppArmor
	}
	if o.ProcessLabel != "" {
		p.SelinuxLabel = o.ProcessLabel
	}
	if len(o.Caps) > 0 {
		if p.Capabilities == nil {
			p.Capabilities = &specs.LinuxCapabilities{}
		}
		c := p.Capabilities
		for _, name := range o.Caps {
			name = strings.ToUpper(name)
			if !strings.HasPrefix(name, "CAP_") {
				name = "CAP_" + name
			}
			add := func(set []string) []string {
				if slices.Contains(set, name) {
					return set
				}
				return append(set, name)
			}
			c.Bounding, c.Effective, c.Permitted = add(c.Bounding), add(c.Effective), add(c.Permitted)
			// Ambient needs inheritable; runc only adds it where the spec already has inheritable caps.
			if c.Inheritable != nil {
				c.Ambient = add(c.Ambient)
			}
		}
	}
	return &p, nil
}
