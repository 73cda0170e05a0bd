//go:build !linux && !freebsd

package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/knast/knast/internal/store"
)

// otherBackend stands in where knast has no container backend yet: every lifecycle call that needs the
// OS says so clearly, while records, state and list keep working.
type otherBackend struct{}

func newBackend(*slog.Logger, string) backend { return otherBackend{} }

var errNoBackend = fmt.Errorf("containers on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func (otherBackend) create(context.Context, *createRequest) error { return errNoBackend }

func (otherBackend) processes(rec *store.Container, _ *specs.Spec) ([]int, error) {
	if rec.Pid == 0 {
		return nil, nil
	}
	return []int{rec.Pid}, nil
}

func (otherBackend) exec(context.Context, *execRequest) (int, error) { return -1, errNoBackend }

func (otherBackend) resources(*store.Container, *specs.Spec) (resourceCtl, error) {
	return nil, errNoBackend
}

func (otherBackend) destroy(context.Context, *store.Container, *specs.Spec) error { return nil }

func (otherBackend) features() *features.Features {
	return &features.Features{OCIVersionMin: "1.0.0", OCIVersionMax: specs.Version}
}
