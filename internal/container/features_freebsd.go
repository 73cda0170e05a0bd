//go:build freebsd

package container

import (
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/knast/knast/internal/container/freebsd"
)

// features reports what the jail backend implements. The features document has no FreeBSD section:
// the jail specifics are annotations.
func (b *freebsdBackend) features() *features.Features {
	return &features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  freebsd.MountOptionNames(),
		Annotations: map[string]string{
			"io.github.knast.freebsd.mount-types": strings.Join(freebsd.MountTypes(), ","),
			"io.github.knast.freebsd.racct":       boolString(freebsd.RacctEnabled()),
			"io.github.knast.freebsd.annotations": strings.Join(freebsd.Annotations(), ","),
		},
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}
