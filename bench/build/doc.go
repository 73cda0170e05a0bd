// Command build measures `knast build` beside `buildah bud` on the same Dockerfiles (multi-stage,
// ARG/ENV expansion, COPY --chown/--chmod, deletions by RUN, WORKDIR through a symlink,
// .dockerignore, scratch, and one with many files), from the same busybox base image given to both
// offline: cold (knast --no-cache; buildah's default single-layer bud) and cached (a rebuild: knast's
// step cache; buildah bud --layers after a --layers build). Builds are interleaved; it reports
// medians and the knast/buildah ratios, never asserting timings. Run it as root from the repository
// root: `go run ./bench/build -knast bin/knast` (or `make bench`).
package main
