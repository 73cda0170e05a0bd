package bsdnet

import (
	"fmt"
	"strconv"
	"strings"
)

// HelperVerb is the hidden knast verb the FreeBSD driver starts inside a VNET jail (os/exec with
// SysProcAttr.Jail, never jail_attach of knast itself). The child opens an AF_INET datagram socket and a
// PF_ROUTE socket there, which belong to the jail's network stack for their whole life, passes both back
// over the unix socket it inherited as fd 3 (SCM_RIGHTS) and exits; the driver then configures the jail's
// interfaces and routes through them from the host process.
const HelperVerb = "vnet-sockets"

// HelperFDs is how many descriptors the helper sends: the AF_INET socket, then the PF_ROUTE socket.
const HelperFDs = 2

// Jail parses Attachment.NetNS on FreeBSD: a jail ID ("12") or a jail name (what jail_set(2) calls
// "name"; knast names a container's jail after its ID).
func Jail(netns string) (jid int, name string, err error) {
	if netns == "" {
		return 0, "", fmt.Errorf("no jail given")
	}
	if n, err := strconv.Atoi(netns); err == nil {
		if n <= 0 {
			return 0, "", fmt.Errorf("jail ID %d: want a positive number", n)
		}
		return n, "", nil
	}
	if strings.HasPrefix(netns, "/") {
		return 0, "", fmt.Errorf("jail %q: a path, want a jail name or ID (a network namespace path is Linux's)", netns)
	}
	if strings.IndexByte(netns, 0) >= 0 {
		return 0, "", fmt.Errorf("jail name %q: contains NUL", netns)
	}
	return 0, netns, nil
}
