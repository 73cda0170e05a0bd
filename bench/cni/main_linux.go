//go:build linux

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/knast/knast/bench/internal/benchutil"
	"github.com/knast/knast/internal/network"
)

// opTimeout bounds one plugin call, so a hung plugin cannot hang the benchmark.
const opTimeout = 30 * time.Second

type options struct {
	rounds, warmup int
	knast, plugins string
}

// subject is one plugin under test: its network config, its namespace and its timings.
type subject struct {
	name    string
	cni     *libcni.CNIConfig
	list    *libcni.NetworkConfigList
	netns   string // name under /run/netns
	bridge  string
	subnet  string
	version string
	skip    string // why it is not (or no longer) measured
	live    bool   // attached now: DEL it on the way out
	add     []time.Duration
	del     []time.Duration
	total   []time.Duration
}

func main() { benchutil.Main("cni", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("cni", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 100, "measured ADD+DEL rounds per plugin")
	fs.IntVar(&o.warmup, "warmup", 5, "unmeasured rounds per plugin before the first measured one")
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary (run as knast-cni through a symlink)")
	fs.StringVar(&o.plugins, "plugins", "/usr/lib/cni", "directory of the reference CNI plugins (bridge, host-local)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.warmup < 0 {
		return errors.New("need -rounds >= 1, -warmup >= 0")
	}
	if err := benchutil.NeedRoot("the plugins create links, namespaces and NAT rules"); err != nil {
		return err
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return fmt.Errorf("needs ip (iproute2) to make the network namespaces: %w", err)
	}
	tmp, err := os.MkdirTemp("", "knast-bcni-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", tmp, rerr)
		}
	}()

	subjects, err := setup(ctx, o, tmp)
	defer func() {
		// Cleanup must run even after Ctrl-C cancelled ctx.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*opTimeout)
		defer cancel()
		if cerr := cleanup(cctx, out, subjects, tmp); cerr != nil {
			if err == nil {
				err = cerr
			} else {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
			}
		}
	}()
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "warming up (%d rounds per plugin)...\n", o.warmup)
	for i := 0; i < o.warmup && ctx.Err() == nil; i++ {
		for _, s := range subjects {
			if s.skip != "" {
				continue
			}
			if _, _, err := s.round(ctx, i == 0); err != nil {
				s.skip = "warm-up: " + err.Error()
			}
		}
	}
	fmt.Fprintf(out, "measuring %d rounds, interleaved...\n", o.rounds)
	for i := 0; i < o.rounds && ctx.Err() == nil; i++ {
		// Alternate which plugin goes first, so neither always runs right after the other.
		for j := range subjects {
			s := subjects[(i+j)%len(subjects)]
			if s.skip != "" {
				continue
			}
			add, del, err := s.round(ctx, o.warmup == 0 && i == 0)
			if err != nil {
				s.skip = fmt.Sprintf("round %d: %v", i, err)
				continue
			}
			s.add, s.del, s.total = append(s.add, add), append(s.del, del), append(s.total, add+del)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if err := report(out, o, subjects); err != nil {
		return err
	}
	if subjects[0].skip != "" {
		return fmt.Errorf("knast-cni was not measured: %s", subjects[0].skip)
	}
	return nil
}

// setup makes the plugin directory (a knast-cni symlink), one network namespace and one network config
// per plugin: knast-cni on 10.232.60.0/24, bridge + host-local on 10.232.61.0/24, both with ipMasq and
// the bridge as gateway. A plugin that is missing is skipped.
func setup(ctx context.Context, o options, tmp string) ([]*subject, error) {
	tag := fmt.Sprint(os.Getpid() % 100000)
	knast, err := exec.LookPath(o.knast)
	if err == nil {
		knast, err = filepath.Abs(knast)
	}
	knastSkip := ""
	if err != nil {
		knastSkip = fmt.Sprintf("knast not found (%v); run `make build` first", err)
	}
	knastDir := filepath.Join(tmp, "plugins")
	if err := os.Mkdir(knastDir, 0o755); err != nil {
		return nil, fmt.Errorf("plugin dir: %w", err)
	}
	if knastSkip == "" {
		if err := os.Symlink(knast, filepath.Join(knastDir, "knast-cni")); err != nil {
			return nil, fmt.Errorf("knast-cni symlink: %w", err)
		}
	}
	dataDir := filepath.Join(tmp, "knast-data")
	k := &subject{name: "knast-cni", bridge: "kbcnik" + tag, subnet: "10.232.60.0/24", skip: knastSkip,
		version: benchutil.Version(ctx, opTimeout, knast, "--version")}
	kconf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"kbench-knast-%s","plugins":[{"type":"knast-cni","bridge":%q,
		"subnet":%q,"ipMasq":true,"dataDir":%q}]}`, tag, k.bridge, k.subnet, dataDir)
	b := &subject{name: "bridge", bridge: "kbcnib" + tag, subnet: "10.232.61.0/24",
		// The plugins print no version of their own; the Debian package's is the one to name.
		version: "containernetworking-plugins " + benchutil.Version(ctx, opTimeout, "dpkg-query", "-W", "-f", "${Version}", "containernetworking-plugins")}
	bconf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":"kbench-bridge-%s","plugins":[{"type":"bridge","bridge":%q,
		"isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":%q,"dataDir":%q}}]}`,
		tag, b.bridge, b.subnet, filepath.Join(tmp, "host-local"))
	for _, p := range []string{"bridge", "host-local"} {
		if _, err := os.Stat(filepath.Join(o.plugins, p)); err != nil {
			b.skip = fmt.Sprintf("%s plugin missing (apt-get install containernetworking-plugins): %v", p, err)
		}
	}
	subjects := []*subject{k, b}
	for _, s := range subjects {
		conf := kconf
		if s == b {
			conf = bconf
		}
		if s.list, err = libcni.ConfListFromBytes([]byte(conf)); err != nil {
			return subjects, fmt.Errorf("%s config: %w", s.name, err)
		}
		// Same harness for both: knast-cni's directory first, then the reference plugins.
		s.cni = libcni.NewCNIConfigWithCacheDir([]string{knastDir, o.plugins}, filepath.Join(tmp, "cache-"+s.name), nil)
		ns := fmt.Sprintf("kbcni-%s-%s", tag, s.name)
		if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
			return subjects, fmt.Errorf("ip netns add %s: %w: %s", ns, err, strings.TrimSpace(string(out)))
		}
		s.netns = ns
	}
	return subjects, nil
}

func (s *subject) rt() *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: "kbench-" + s.name, NetNS: "/run/netns/" + s.netns, IfName: "eth0"}
}

// round times one ADD and one DEL. With verify it checks, between the two, that the container's eth0
// carries the result's address, so a plugin that does nothing cannot look fast.
func (s *subject) round(ctx context.Context, verify bool) (add, del time.Duration, err error) {
	rt := s.rt()
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
	defer cancel()
	t := time.Now()
	r, err := s.cni.AddNetworkList(actx, s.list, rt)
	add = time.Since(t)
	if err != nil {
		return 0, 0, fmt.Errorf("ADD: %w", err)
	}
	s.live = true
	if verify {
		if err := verifyAddr(s.netns, r); err != nil {
			return 0, 0, err
		}
	}
	t = time.Now()
	err = s.cni.DelNetworkList(actx, s.list, rt)
	del = time.Since(t)
	if err != nil {
		return 0, 0, fmt.Errorf("DEL: %w", err)
	}
	s.live = false
	return add, del, nil
}

func verifyAddr(ns string, r types.Result) error {
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		return fmt.Errorf("result: %w", err)
	}
	if len(res.IPs) == 0 {
		return errors.New("ADD returned no address")
	}
	want := res.IPs[0].Address.IP.String()
	out, err := exec.Command("ip", "-n", ns, "-j", "addr", "show", "dev", "eth0").Output()
	if err != nil {
		return fmt.Errorf("eth0 in %s after ADD: %w", ns, err)
	}
	var links []struct {
		AddrInfo []struct {
			Local string `json:"local"`
		} `json:"addr_info"`
	}
	if err := json.Unmarshal(out, &links); err != nil {
		return fmt.Errorf("ip addr output %q: %w", out, err)
	}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if a.Local == want {
				return nil
			}
		}
	}
	return fmt.Errorf("eth0 in %s lacks the result's address %s: %s", ns, want, out)
}

// cleanup DELs what is still attached, removes the knast network, the bridge plugin's bridge and the
// namespaces, and fails when a link of the run is left.
func cleanup(ctx context.Context, out io.Writer, subjects []*subject, tmp string) error {
	var errs []error
	for _, s := range subjects {
		if s.live {
			if err := s.cni.DelNetworkList(ctx, s.list, s.rt()); err != nil {
				errs = append(errs, fmt.Errorf("%s: DEL: %w", s.name, err))
			}
		}
		if s.netns != "" {
			if o, err := exec.Command("ip", "netns", "del", s.netns).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", s.netns, err, strings.TrimSpace(string(o))))
			}
		}
	}
	if len(subjects) == 2 {
		k, b := subjects[0], subjects[1]
		m := network.New(network.Options{StorageDir: filepath.Join(tmp, "knast-data")})
		if err := m.Remove(ctx, k.list.Name); err != nil && !errors.Is(err, network.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove knast network: %w", err))
		}
		// The bridge plugin never deletes its bridge.
		if _, err := net.InterfaceByName(b.bridge); err == nil {
			if o, err := exec.Command("ip", "link", "del", b.bridge).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("ip link del %s: %w: %s", b.bridge, err, strings.TrimSpace(string(o))))
			}
		}
		for _, br := range []string{k.bridge, b.bridge} {
			if _, err := net.InterfaceByName(br); err == nil {
				errs = append(errs, fmt.Errorf("bridge %s left after cleanup", br))
			}
		}
		table := network.NATTable(filepath.Join(tmp, "knast-data"))
		if o, err := exec.Command("nft", "list", "table", "ip", table).CombinedOutput(); err == nil {
			errs = append(errs, fmt.Errorf("nft table %s left after cleanup:\n%s", table, o))
		}
	}
	if len(errs) == 0 {
		fmt.Fprintln(out, "cleanup: attachments deleted; no bridges, namespaces or knast nft table left")
	}
	return errors.Join(errs...)
}

func report(w io.Writer, o options, subjects []*subject) error {
	fmt.Fprintf(w, "\nknast-cni attach+detach benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", benchutil.Machine()+", load "+benchutil.LoadAvg())
	fmt.Fprintf(w, "%d rounds of ADD then DEL (eth0 in a network namespace) per plugin through libcni, interleaved (first plugin alternates), after %d warm-up rounds\n",
		o.rounds, o.warmup)
	fmt.Fprintln(w, "knast-cni: bridge network with ipMasq; bridge: isGateway + ipMasq, host-local IPAM; CNI 1.0.0 configs")
	fmt.Fprintln(w, "\nwall time in ms")
	rows := [][]string{{"plugin", "op", "median", "p90", "min", "max", "n"}}
	for _, s := range subjects {
		if len(s.total) == 0 {
			rows = append(rows, []string{s.name, "-", "skipped: " + s.skip})
			continue
		}
		for _, op := range []struct {
			name string
			d    []time.Duration
		}{{"ADD", s.add}, {"DEL", s.del}, {"ADD+DEL", s.total}} {
			t := benchutil.Summarize(op.d)
			rows = append(rows, []string{s.name, op.name, benchutil.MS(t.Median), benchutil.MS(t.P90), benchutil.MS(t.Min), benchutil.MS(t.Max), fmt.Sprint(t.N)})
		}
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	for _, s := range subjects {
		if s.skip != "" && len(s.total) > 0 {
			fmt.Fprintf(w, "%s stopped early: %s\n", s.name, s.skip)
		}
	}
	k, b := subjects[0], subjects[1]
	fmt.Fprintln(w, "\nknast-cni/bridge (< 1 means knast-cni is faster; target for ADD+DEL: <= 0.5x)")
	rows = [][]string{{"op", "median", "p90", "median diff ms"}}
	for _, op := range []struct {
		name string
		k, b []time.Duration
	}{{"ADD", k.add, b.add}, {"DEL", k.del, b.del}, {"ADD+DEL", k.total, b.total}} {
		ks, bs := benchutil.Summarize(op.k), benchutil.Summarize(op.b)
		rows = append(rows, []string{op.name, benchutil.Ratio(float64(ks.Median), float64(bs.Median)),
			benchutil.Ratio(float64(ks.P90), float64(bs.P90)), benchutil.Delta(ks.Median, bs.Median)})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nversions:")
	for _, s := range subjects {
		fmt.Fprintf(w, "  %s: %s\n", s.name, s.version)
	}
	return nil
}
