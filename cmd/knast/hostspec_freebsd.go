package main

import (
	"errors"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/spec"
)

// exampleSpec is `knast spec`'s config for this host: a VNET jail.
func exampleSpec(rootless bool) (*specs.Spec, error) {
	if rootless {
		return nil, errors.New("--rootless: jails need root on FreeBSD")
	}
	return spec.ExampleFreeBSD(), nil
}

// specFromImage makes a FreeBSD-host config: a native jail for a FreeBSD image, a Linux-ABI jail for a
// Linux one.
func specFromImage(cfg ocispec.Image, rootfs string, o spec.FromImageOptions) (*specs.Spec, error) {
	return spec.FromImageFreeBSD(cfg, rootfs, o)
}
