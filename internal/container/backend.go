package container

import (
	"context"
	"os"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/knast/knast/internal/store"
)

// backend is the one OS seam: everything the lifecycle needs that differs between Linux and FreeBSD.
// It speaks runtime-spec types; the lifecycle (records, status, fifo, hooks outside the container) is shared.
type backend interface {
	// create starts the container's init and returns once it waits on the exec fifo. It calls r.onPid as
	// soon as the init's pid is known, before any setup, so a crash leaves a record delete can clean up.
	create(ctx context.Context, r *createRequest) error
	// processes lists the host pids of every process of the container (for kill --all).
	processes(rec *store.Container, spec *specs.Spec) ([]int, error)
	// destroy removes what the container left outside its own namespaces; idempotent, and must work
	// after a crash at any point of create.
	destroy(ctx context.Context, rec *store.Container, spec *specs.Spec) error
	// resources opens the container's resource group (cgroup on Linux) for pause, stats, update and ps.
	resources(rec *store.Container, spec *specs.Spec) (resourceCtl, error)
	// exec starts r.Spec.Process in the running container's namespaces and returns its host pid.
	exec(ctx context.Context, r *execRequest) (int, error)
	features() *features.Features
}

// execRequest is what the lifecycle hands the backend for one exec.
type execRequest struct {
	Rec  *store.Container
	Spec *specs.Spec // the container's config with Process replaced by the exec'd process
	Opts ExecOptions
}

// resourceCtl is a container's resource group.
type resourceCtl interface {
	Pids() ([]int, error)
	Freeze() error
	Thaw() error
	Frozen() (bool, error)
	Update(r *specs.LinuxResources) error
	// Stats is the data of runc's stats event.
	Stats() (any, error)
	// OOMEvents signals each out-of-memory kill until ctx ends.
	OOMEvents(ctx context.Context) (<-chan struct{}, error)
}

// createRequest is what the lifecycle hands the backend for one create.
type createRequest struct {
	ID       string
	Bundle   string
	Rootfs   string // absolute
	StateDir string
	FifoPath string
	Spec     *specs.Spec
	Opts     CreateOptions
	// onPid records the init's pid; an error aborts the create.
	onPid func(pid int) error
	// runHooks runs hooks in the runtime namespace with the state of the container (pid known).
	runHooks func(ctx context.Context, kind string, hooks []specs.Hook) error
	// state is the container state handed to hooks run inside the container.
	state func() specs.State
}

// CreateOptions are the create flags of the runc command line.
type CreateOptions struct {
	Bundle        string
	PidFile       string
	ConsoleSocket string
	NoPivot       bool
	NoNewKeyring  bool
	PreserveFds   int
	Stdin         *os.File
	Stdout        *os.File
	Stderr        *os.File
}

// initReported is an error the container's init reported itself over the sync socket (as opposed to
// the socket breaking): its message is the init's.
type initReported string

func (e initReported) Error() string { return "container init: " + string(e) }
