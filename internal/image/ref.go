package image

import (
	"fmt"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// ParseReference parses a Docker-style reference: "busybox" is docker.io/library/busybox:latest.
// insecure allows plain HTTP (and self-signed TLS) for the reference's registry.
func ParseReference(ref string, insecure bool) (name.Reference, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	r, err := name.ParseReference(ref, opts...)
	if err != nil {
		return nil, fmt.Errorf("image reference %q: %w", ref, err)
	}
	return r, nil
}

// NormalizeName returns the full name knast stores and prints for ref: registry/repository:tag or
// registry/repository@digest, with Docker Hub spelled docker.io (go-containerregistry says
// index.docker.io).
func NormalizeName(ref string) (string, error) {
	r, err := ParseReference(ref, false)
	if err != nil {
		return "", err
	}
	return refName(r), nil
}

func refName(r name.Reference) string {
	sep := ":"
	if _, ok := r.(name.Digest); ok {
		sep = "@"
	}
	return repoName(r.Context()) + sep + r.Identifier()
}

func repoName(repo name.Repository) string {
	reg := repo.RegistryStr()
	if reg == name.DefaultRegistry {
		reg = "docker.io"
	}
	return reg + "/" + repo.RepositoryStr()
}

// Platform is an os/arch[/variant] triple.
type Platform struct{ OS, Architecture, Variant string }

// HostPlatform is the platform images are chosen for by default: Linux on the host's architecture
// (container images are Linux images, also on FreeBSD's Linux emulation).
func HostPlatform() Platform {
	p := Platform{OS: "linux", Architecture: runtime.GOARCH}
	if p.Architecture == "arm64" {
		p.Variant = "v8"
	}
	return p
}

// ParsePlatform parses os/arch[/variant]; "" is the host's platform.
func ParsePlatform(s string) (Platform, error) {
	if s == "" {
		return HostPlatform(), nil
	}
	parts := strings.Split(s, "/")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Platform{}, fmt.Errorf("platform %q: want os/arch[/variant]", s)
	}
	p := Platform{OS: parts[0], Architecture: parts[1]}
	if len(parts) == 3 {
		if parts[2] == "" {
			return Platform{}, fmt.Errorf("platform %q: empty variant", s)
		}
		p.Variant = parts[2]
	}
	return p, nil
}

func (p Platform) String() string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

func platformOf(p *v1.Platform) Platform {
	if p == nil {
		return Platform{}
	}
	return Platform{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant}
}

// matches reports whether an index entry's platform satisfies the wanted one. A wanted variant must
// match, except arm64's v8, which indexes usually leave out.
func (p Platform) matches(have Platform) bool {
	if p.OS != have.OS || p.Architecture != have.Architecture {
		return false
	}
	if p.Variant == "" || p.Variant == have.Variant {
		return true
	}
	return p.Architecture == "arm64" && p.Variant == "v8" && have.Variant == ""
}
