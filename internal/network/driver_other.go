//go:build !linux && !freebsd

package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
)

// otherDriver answers every call with errors.ErrUnsupported: knast networks need Linux or FreeBSD.
type otherDriver struct{}

func newDriver(*slog.Logger) driver { return otherDriver{} }

var errOS = fmt.Errorf("networks on %s: %w", runtime.GOOS, errors.ErrUnsupported)

func (otherDriver) ensureBridge(context.Context, *Network) error           { return errOS }
func (otherDriver) removeBridge(context.Context, *Network) error           { return errOS }
func (otherDriver) attach(context.Context, *Network, *Attachment) error    { return errOS }
func (otherDriver) detach(context.Context, *Network, *Attachment) error    { return errOS }
func (otherDriver) check(context.Context, *Network, *Attachment) error     { return errOS }
func (otherDriver) syncNAT(context.Context, []Network, []Attachment) error { return errOS }
func (otherDriver) hostRoutes(context.Context) ([]netip.Prefix, error)     { return nil, errOS }
