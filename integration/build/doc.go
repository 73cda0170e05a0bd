// Package buildtest drives `knast build` against the real kernel: Dockerfiles built by knast and
// compared with buildah bud, security of COPY/ADD/WORKDIR through symlinks, the cache, failures.
package buildtest
