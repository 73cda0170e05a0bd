//go:build !freebsd

package main

import (
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/spec"
)

// exampleSpec is `knast spec`'s config for this host.
func exampleSpec(rootless bool) (*specs.Spec, error) { return spec.Example(rootless), nil }

// specFromImage makes the config for an image on this host.
func specFromImage(cfg ocispec.Image, rootfs string, o spec.FromImageOptions) (*specs.Spec, error) {
	return spec.FromImage(cfg, rootfs, o)
}
