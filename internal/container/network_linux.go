package container

import (
	"errors"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// networkNamespace is the path of the network namespace the container's init lives in. A container in
// the host's network namespace cannot be attached: that would rewire the host.
func networkNamespace(_ string, s *specs.Spec, pid int) (string, error) {
	if s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			if ns.Type != specs.NetworkNamespace {
				continue
			}
			if ns.Path != "" {
				return ns.Path, nil
			}
			return fmt.Sprintf("/proc/%d/ns/net", pid), nil
		}
	}
	return "", errors.New("config.json: annotations ask for a network, but linux.namespaces has no network namespace")
}
