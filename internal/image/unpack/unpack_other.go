//go:build !linux && !freebsd

package unpack

import (
	"context"
	"errors"
	"io"
)

func extract(context.Context, string, []io.Reader, Options) (Stats, error) {
	return Stats{}, errors.ErrUnsupported
}
