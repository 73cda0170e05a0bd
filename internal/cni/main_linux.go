//go:build linux

package cni

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/network"
)

// Main runs the plugin as CNI's skel dispatches it (CNI_COMMAND, stdin, stdout): a result or a CNI
// error as JSON on stdout. It returns the exit status; about names the build in the usage line.
func Main(about string) int {
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGTERM, unix.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p := &Plugin{Open: func(dir string) Networks {
		return network.New(network.Options{StorageDir: dir, Logger: log})
	}, MAC: linkMAC}
	funcs := skel.CNIFuncs{
		Add: func(a *skel.CmdArgs) error {
			r, err := p.Add(ctx, argsOf(a))
			if err != nil {
				return err
			}
			return r.Print()
		},
		Del:    func(a *skel.CmdArgs) error { return p.Del(ctx, argsOf(a)) },
		Check:  func(a *skel.CmdArgs) error { return p.Check(ctx, argsOf(a)) },
		Status: func(a *skel.CmdArgs) error { return p.Status(ctx, argsOf(a)) },
		GC:     func(a *skel.CmdArgs) error { return p.GC(ctx, argsOf(a)) },
	}
	if e := skel.PluginMainFuncsWithError(funcs, Versions, about); e != nil {
		if err := e.Print(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: write error: %v (error was: %v)\n", PluginType, err, e)
		}
		return 1
	}
	return 0
}

// linkMAC reads one link's MAC with a single RTM_GETLINK; net.InterfaceByName dumps every link.
func linkMAC(name string) string {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return ""
	}
	return l.Attrs().HardwareAddr.String()
}

func argsOf(a *skel.CmdArgs) Args {
	return Args{ContainerID: a.ContainerID, Netns: a.Netns, IfName: a.IfName, Args: a.Args, StdinData: a.StdinData}
}
