//go:build !linux

package cni

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/containernetworking/cni/pkg/types"
)

// Main answers every command with a CNI error: CNI's skel (its netns checks) is Linux-only.
func Main(about string) int {
	err := fmt.Errorf("%s on %s: %w", PluginType, runtime.GOOS, errors.ErrUnsupported)
	if perr := types.NewError(types.ErrPluginNotAvailable, err.Error(), about).Print(); perr != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return 1
}
