package container

import (
	"errors"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/container/freebsd"
)

// networkNamespace names the container's jail, which must have a VNET of its own: attaching a jail that
// shares the host's stack would rewire the host.
func networkNamespace(id string, s *specs.Spec, _ int) (string, error) {
	if s.FreeBSD == nil || s.FreeBSD.Jail == nil || s.FreeBSD.Jail.Vnet != specs.FreeBSDShareNew {
		return "", errors.New(`config.json: annotations ask for a network, but freebsd.jail.vnet is not "new"`)
	}
	return freebsd.FullJailName(id, s), nil
}
