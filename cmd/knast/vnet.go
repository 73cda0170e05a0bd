package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"

	"github.com/spf13/pflag"
)

// vnetSocketsCmd is the hidden helper the FreeBSD network driver starts: it attaches itself to a VNET
// jail and hands sockets of the jail's network stack back on fd 3, so knast never jail_attaches itself.
func vnetSocketsCmd() command {
	return command{summary: "open sockets in a VNET jail (internal)", hidden: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) != 1 {
				return errors.New("vnet-sockets: usage: vnet-sockets JID")
			}
			jid, err := strconv.Atoi(args[0])
			if err != nil || jid <= 0 {
				return fmt.Errorf("vnet-sockets: jail ID %q is not a positive number", args[0])
			}
			return serveJailSockets(jid, os.NewFile(3, "vnet-helper"))
		}
	}}
}
