package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/network"
)

// networks is the network manager over --storage (networks.db lives beside the images).
func (a *app) networks() *network.Manager {
	return network.New(network.Options{StorageDir: a.storage, Logger: a.log})
}

func networkCmds() map[string]command {
	return map[string]command{
		"create":     networkCreateCmd(),
		"ls":         networkLsCmd(),
		"list":       networkLsCmd(),
		"inspect":    networkInspectCmd(),
		"rm":         networkRmCmd(),
		"connect":    networkConnectCmd(),
		"disconnect": networkDisconnectCmd(),
	}
}

// networkCmd dispatches `knast network SUBCOMMAND [flags] [args]`.
func networkCmd() command {
	return command{summary: "manage bridge networks: create, ls, inspect, rm, connect, disconnect", noInterspersed: true, flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			subs := networkCmds()
			if len(args) == 0 {
				names := make([]string, 0, len(subs))
				for n := range subs {
					names = append(names, n)
				}
				sort.Strings(names)
				return fmt.Errorf("network: expects a subcommand: %s", strings.Join(names, ", "))
			}
			sub, ok := subs[args[0]]
			if !ok {
				return fmt.Errorf("network: unknown subcommand %q", args[0])
			}
			sfs := pflag.NewFlagSet("network "+args[0], pflag.ContinueOnError)
			sfs.SetOutput(a.stderr)
			run := sub.flags(sfs)
			if err := sfs.Parse(args[1:]); err != nil {
				if errors.Is(err, pflag.ErrHelp) {
					return nil
				}
				return fmt.Errorf("network %s: %w", args[0], err)
			}
			return run(ctx, a, sfs.Args())
		}
	}}
}

func networkCreateCmd() command {
	return command{summary: "create a bridge network", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		subnet := fs.String("subnet", "", "IPv4 subnet in CIDR form (default: a free /24 in 10.90.0.0-10.99.255.0)")
		gateway := fs.String("gateway", "", "the bridge's address (default: the subnet's first address)")
		bridge := fs.String("bridge", "", "bridge interface name (default: the first free knastN)")
		mtu := fs.Int("mtu", 0, "MTU of the bridge and the containers' interfaces (default: 1500)")
		noMasq := fs.Bool("disable-masquerade", false, "do not masquerade traffic leaving the subnet")
		labels := fs.StringArray("label", nil, "KEY=VALUE metadata (repeatable)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("network create", args, 1, "a network name"); err != nil {
				return err
			}
			o := network.CreateOptions{Name: args[0], Bridge: *bridge, MTU: *mtu}
			var err error
			if *subnet != "" {
				if o.Subnet, err = netip.ParsePrefix(*subnet); err != nil {
					return fmt.Errorf("network create: --subnet: %w", err)
				}
			}
			if *gateway != "" {
				if o.Gateway, err = netip.ParseAddr(*gateway); err != nil {
					return fmt.Errorf("network create: --gateway: %w", err)
				}
			}
			masq := !*noMasq
			o.IPMasq = &masq
			for _, l := range *labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok || k == "" {
					return fmt.Errorf("network create: --label %q: want KEY=VALUE", l)
				}
				if o.Labels == nil {
					o.Labels = map[string]string{}
				}
				o.Labels[k] = v
			}
			n, err := a.networks().Create(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintln(a.stdout, n.Name)
			return nil
		}
	}}
}

func networkLsCmd() command {
	return command{summary: "list networks", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		format := fs.StringP("format", "f", "table", "output format: table or json")
		quiet := fs.BoolP("quiet", "q", false, "print only the names")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("network ls", args, 0, "no arguments"); err != nil {
				return err
			}
			if *format != "table" && *format != "json" {
				return fmt.Errorf("network ls: --format: %q is not one of table, json", *format)
			}
			m := a.networks()
			nets, err := m.List(ctx)
			if err != nil {
				return err
			}
			if *quiet {
				for _, n := range nets {
					fmt.Fprintln(a.stdout, n.Name)
				}
				return nil
			}
			if *format == "json" {
				return printJSON(a, nets)
			}
			atts, err := m.Attachments(ctx, "")
			if err != nil {
				return err
			}
			count := map[string]int{}
			for _, at := range atts {
				count[at.Network]++
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "NAME\tSUBNET\tGATEWAY\tBRIDGE\tMASQUERADE\tCONTAINERS")
			for _, n := range nets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%t\t%d\n", n.Name, n.Subnet, n.Gateway, n.Bridge, n.IPMasq, count[n.Name])
			}
			return tw.Flush()
		}
	}}
}

// networkInspect is what `network inspect` prints per network.
type networkInspect struct {
	network.Network
	Attachments []network.Attachment `json:"attachments"`
}

func networkInspectCmd() command {
	return command{summary: "print networks and their attachments as JSON", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) == 0 {
				return errors.New("network inspect: expects one or more network names")
			}
			m := a.networks()
			out := []networkInspect{}
			for _, name := range args {
				n, err := m.Get(ctx, name)
				if err != nil {
					return err
				}
				atts, err := m.Attachments(ctx, name)
				if err != nil {
					return err
				}
				out = append(out, networkInspect{Network: n, Attachments: atts})
			}
			return printJSON(a, out)
		}
	}}
}

func networkRmCmd() command {
	return command{summary: "remove networks (refused while containers are attached)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if len(args) == 0 {
				return errors.New("network rm: expects one or more network names")
			}
			m := a.networks()
			var errs []error
			for _, name := range args {
				if err := m.Remove(ctx, name); err != nil {
					errs = append(errs, err)
					continue
				}
				fmt.Fprintln(a.stdout, name)
			}
			return errors.Join(errs...)
		}
	}}
}

// containerNetNS returns the network namespace of a knast container under --root that has a live init.
func (a *app) containerNetNS(ctx context.Context, id string) (string, error) {
	st, err := a.manager().State(ctx, id)
	if err != nil {
		return "", err
	}
	if st.Pid <= 0 || st.Status == "stopped" {
		return "", fmt.Errorf("container %s is %s: it has no network namespace to connect", id, st.Status)
	}
	return "/proc/" + strconv.Itoa(st.Pid) + "/ns/net", nil
}

func networkConnectCmd() command {
	return command{summary: "connect a running container to a network", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		publish := fs.StringArrayP("publish", "p", nil, "publish a port: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp] (repeatable)")
		ip := fs.String("ip", "", "the container's address (default: the next free one)")
		ifName := fs.String("ifname", "", "interface name in the container (default: the first free ethN)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("network connect", args, 2, "a network and a container"); err != nil {
				return err
			}
			o := network.AttachOptions{Network: args[0], ContainerID: args[1], IfName: *ifName}
			for _, p := range *publish {
				pm, err := network.ParsePortMapping(p)
				if err != nil {
					return fmt.Errorf("network connect: %w", err)
				}
				o.Ports = append(o.Ports, pm...)
			}
			if *ip != "" {
				addr, err := netip.ParseAddr(*ip)
				if err != nil {
					return fmt.Errorf("network connect: --ip: %w", err)
				}
				o.IP = addr
			}
			var err error
			if o.NetNS, err = a.containerNetNS(ctx, o.ContainerID); err != nil {
				return fmt.Errorf("network connect: %w", err)
			}
			m := a.networks()
			if o.IfName == "" {
				atts, err := m.Attachments(ctx, "")
				if err != nil {
					return err
				}
				o.IfName = freeIfName(atts, o.ContainerID)
			}
			att, err := m.Attach(ctx, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s %s %s\n", att.ContainerID, att.IfName, att.Address)
			return nil
		}
	}}
}

// freeIfName is the first ethN the container has on no network.
func freeIfName(atts []network.Attachment, id string) string {
	used := map[string]bool{}
	for _, at := range atts {
		if at.ContainerID == id {
			used[at.IfName] = true
		}
	}
	for i := 0; ; i++ {
		if n := "eth" + strconv.Itoa(i); !used[n] {
			return n
		}
	}
}

func networkDisconnectCmd() command {
	return command{summary: "disconnect a container from a network", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("network disconnect", args, 2, "a network and a container"); err != nil {
				return err
			}
			m := a.networks()
			atts, err := m.Attachments(ctx, args[0])
			if err != nil {
				return err
			}
			found := false
			for _, at := range atts {
				if at.ContainerID == args[1] {
					found = true
					if err := m.Detach(ctx, at.Network, at.ContainerID, at.IfName); err != nil {
						return err
					}
				}
			}
			if !found {
				return fmt.Errorf("network disconnect: container %s is not connected to network %s", args[1], args[0])
			}
			return nil
		}
	}}
}
