package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/network"
)

// The annotations through which a bundle asks the runtime for networks: attached at create (before the
// process starts), detached at delete, also by delete --force after a crash.
const (
	// annNetwork lists knast networks by name, comma-separated ("default" or "bridge": the default one).
	annNetwork = "org.knast.network"
	// annPorts publishes ports on the first network: [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp], comma-separated.
	annPorts = "org.knast.network.ports"
	// annEtc set to "rootfs" writes /etc/hosts and /etc/resolv.conf into the rootfs once the address is
	// known (run --image sets it: its bundle is knast's own).
	annEtc = "org.knast.network.etc"
)

// networker connects containers through internal/network for the lifecycle (container.Networker).
type networker struct{ m *network.Manager }

func newNetworker(a *app) networker {
	return networker{network.New(network.Options{StorageDir: a.storage, Logger: a.log})}
}

func (networker) Wants(ann map[string]string) bool { return strings.TrimSpace(ann[annNetwork]) != "" }

// networkPlan is what a bundle's annotations ask for.
type networkPlan struct {
	names []string
	ports []network.PortMapping
	etc   bool
}

func parseNetworkAnnotations(ann map[string]string) (networkPlan, error) {
	var p networkPlan
	seen := map[string]bool{}
	for n := range strings.SplitSeq(ann[annNetwork], ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		if n == "default" || n == "bridge" {
			n = network.DefaultName
		}
		if seen[n] {
			return p, fmt.Errorf("config.json: annotations[%q]: network %q listed twice", annNetwork, n)
		}
		seen[n] = true
		p.names = append(p.names, n)
	}
	if len(p.names) == 0 {
		return p, fmt.Errorf("config.json: annotations[%q]: no network named", annNetwork)
	}
	for spec := range strings.SplitSeq(ann[annPorts], ",") {
		if spec = strings.TrimSpace(spec); spec == "" {
			continue
		}
		pm, err := network.ParsePortMapping(spec)
		if err != nil {
			return p, fmt.Errorf("config.json: annotations[%q]: %w", annPorts, err)
		}
		p.ports = append(p.ports, pm...)
	}
	switch v := ann[annEtc]; v {
	case "":
	case "rootfs":
		p.etc = true
	default:
		return p, fmt.Errorf("config.json: annotations[%q]: %q is not \"rootfs\"", annEtc, v)
	}
	return p, nil
}

func (n networker) Attach(ctx context.Context, t container.NetworkTarget) (err error) {
	p, err := parseNetworkAnnotations(t.Annotations)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			n.m.DetachAll(context.WithoutCancel(ctx), t.ID)
		}
	}()
	var atts []network.Attachment
	for i, name := range p.names {
		if name == network.DefaultName {
			if _, err := n.m.Default(ctx); err != nil {
				return fmt.Errorf("network %s: %w", name, err)
			}
		}
		o := network.AttachOptions{Network: name, ContainerID: t.ID, IfName: fmt.Sprintf("eth%d", i), NetNS: t.NetNS}
		if i == 0 {
			o.Ports = p.ports
		}
		att, err := n.m.Attach(ctx, o)
		if err != nil {
			return fmt.Errorf("network %s: %w", name, err)
		}
		atts = append(atts, att)
	}
	if p.etc {
		return writeNetworkEtc(t.Rootfs, t.Hostname, atts)
	}
	return nil
}

func (n networker) Detach(ctx context.Context, id string, _ map[string]string) error {
	return n.m.DetachAll(ctx, id)
}

// writeNetworkEtc writes the container's /etc/hosts (with its addresses) and /etc/resolv.conf (the
// host's, minus loopback servers the container cannot reach), resolved inside the rootfs.
func writeNetworkEtc(rootfs, hostname string, atts []network.Attachment) error {
	resolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read the host's /etc/resolv.conf: %w", err)
	}
	return writeRootfsFiles(rootfs, []rootfsFile{
		{"etc/hosts", network.EtcHosts(hostname, atts)},
		{"etc/resolv.conf", network.ResolvConf(resolv)},
	})
}
