package linux

import (
	"errors"
	"fmt"
	"strings"
)

// SysctlPath maps a linux.sysctl key to its path below /proc/sys, following sysctl(8): when the first
// separator in the key is a dot, dots separate components and slashes stand for literal dots
// ("net.ipv4.conf.eth0/100.forwarding" -> "net/ipv4/conf/eth0.100/forwarding"); when it is a slash, the key
// already is a path and its dots are literal. Keys with empty, "." or ".." components, or NUL bytes, are
// rejected so that a key can never name anything outside /proc/sys.
func SysctlPath(key string) (string, error) {
	if key == "" {
		return "", errors.New("sysctl key must not be empty")
	}
	if strings.ContainsRune(key, 0) {
		return "", fmt.Errorf("sysctl %q: key contains a NUL byte", key)
	}
	p := key
	if i := strings.IndexAny(key, "./"); i >= 0 && key[i] == '.' {
		p = strings.Map(func(r rune) rune {
			switch r {
			case '.':
				return '/'
			case '/':
				return '.'
			}
			return r
		}, key)
	}
	for _, part := range strings.Split(p, "/") {
		switch part {
		case "":
			return "", fmt.Errorf("sysctl %q: empty path component", key)
		case ".", "..":
			return "", fmt.Errorf("sysctl %q: path component %q is not allowed", key, part)
		}
	}
	return p, nil
}
