// Command pull measures turning a registry image into a runtime bundle: knast (`knast bundle`, which
// pulls, unpacks each layer once into its layer cache and mounts an overlay) beside `skopeo copy` +
// `umoci unpack`, on a ~128 MB multi-layer image built offline from host directories and pushed to a
// Debian docker-registry on 127.0.0.1. Cold: an empty store every round. Warm: the image and (for
// knast) its unpacked layers already stored; knast mounts an overlay (and, for reference, copies with
// --copy), umoci unpacks from its layout. It reports medians and the ratios against skopeo+umoci; it
// never asserts timings. Run it as root from the repository root: `go run ./bench/pull -knast
// bin/knast` (or `make bench`).
package main
