//go:build linux

package hardening

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

// testNet is a network private to one test: its own subnet and bridge name, removed at the end.
type testNet struct {
	name, bridge, subnet string
}

// newNetwork creates a network in e's storage and widens e's leak scope to its bridge and the
// storage's nft table (snapshot retaken), so the test ends with neither.
func (e *env) newNetwork(k int) testNet {
	e.t.Helper()
	n := testNet{
		name:   fmt.Sprintf("hnet%d", k),
		bridge: fmt.Sprintf("khb%d%d", os.Getpid()%10000, k),
		subnet: fmt.Sprintf("10.%d.%d.0/24", 200+os.Getpid()%50, k),
	}
	e.links = append(e.links, n.bridge)
	e.nft = append(e.nft, network.NATTable(e.storage))
	var err error
	if e.before, err = testutil.TakeSnapshot(e.scope()); err != nil {
		e.t.Fatal(err)
	}
	e.must("network", "create", "--subnet", n.subnet, "--bridge", n.bridge, n.name)
	// Not t.Context(): it is cancelled before cleanups run.
	e.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if r := e.runCtx(ctx, "network", "rm", n.name); r.code != 0 {
			e.t.Errorf("network rm: %s", r)
		}
	})
	return n
}

// ports lists the interfaces enslaved to the network's bridge.
func (n testNet) ports(t *testing.T) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join("/sys/class/net", n.bridge, "brif"))
	if err != nil {
		t.Fatalf("bridge %s: %v", n.bridge, err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

type netInfo struct {
	Attachments []struct {
		ContainerID string `json:"containerID"`
		HostIf      string `json:"hostIf"`
		Address     string `json:"address"`
	} `json:"attachments"`
}

func (e *env) inspectNet(n testNet) netInfo {
	e.t.Helper()
	var infos []netInfo
	out := e.must("network", "inspect", n.name)
	if err := json.Unmarshal([]byte(out), &infos); err != nil || len(infos) != 1 {
		e.t.Fatalf("network inspect %s: %v: %s", n.name, err, out)
	}
	return infos[0]
}

// TestNetworkCrash SIGKILLs `network connect` and `network disconnect` at random points; after each
// crash `network disconnect` must leave no attachment record (IPAM lease), no host veth on the
// bridge, and a rerun of connect must succeed with the container's address free again.
func TestNetworkCrash(t *testing.T) {
	e := newEnv(t)
	n := e.newNetwork(1)
	bundle := e.bundle("exec sleep 3600")
	const id = "net-crash"
	e.must("run", "-d", "--bundle", bundle, id)
	defer e.run("delete", "--force", id)
	connect := []string{"network", "connect", n.name, id}
	disconnect := []string{"network", "disconnect", n.name, id}
	var total time.Duration
	for range 3 {
		start := time.Now()
		e.must(connect...)
		total += time.Since(start)
		e.must(disconnect...)
	}
	dur := total / 3
	for _, op := range []struct {
		name  string
		args  []string
		setup bool // connect first
		want  int
	}{{"connect", connect, false, 30}, {"disconnect", disconnect, true, 15}} {
		crashes, attempts := 0, 0
		for crashes < op.want && attempts < 3*op.want && !t.Failed() {
			attempts++
			if op.setup {
				e.must(connect...)
			}
			delay := time.Duration(rand.Int64N(int64(dur) * 11 / 10))
			r, killed := e.killAfter(delay, op.args...)
			if killed {
				crashes++
				suite.crashes.Add(1)
			} else if r.code != 0 {
				t.Errorf("%s (not killed): %s", op.name, r)
			}
			what := fmt.Sprintf("network %s killed after %v", op.name, delay)
			e.run(disconnect...) // the recovery; "not connected" is fine
			if info := e.inspectNet(n); len(info.Attachments) > 0 {
				t.Errorf("%s: attachments left after disconnect: %+v", what, info.Attachments)
			}
			if p := n.ports(t); len(p) > 0 {
				t.Errorf("%s: host interfaces left on bridge %s: %v", what, n.bridge, p)
			}
			if crashes%5 == 0 && killed {
				e.must(connect...)
				e.must(disconnect...)
			}
		}
		t.Logf("network %s: %d crashes in %d attempts over %v", op.name, crashes, attempts, dur)
		if crashes < op.want {
			t.Errorf("network %s: only %d of %d crashes landed", op.name, crashes, op.want)
		}
	}
}

// TestConcurrentAttaches connects 20 containers to one network at once: every connect succeeds with
// its own address and host interface, and 20 concurrent disconnects leave the bridge bare and the
// network without attachments.
func TestConcurrentAttaches(t *testing.T) {
	e := newEnv(t)
	n := e.newNetwork(2)
	bundle := e.bundle("exec sleep 3600")
	const count = 20
	ids := make([]string, count)
	for i := range ids {
		ids[i] = fmt.Sprintf("net-conc-%d", i)
		e.must("run", "-d", "--bundle", bundle, ids[i])
		defer e.run("delete", "--force", ids[i])
	}
	parallel := func(args func(id string) []string) []result {
		res := make([]result, count)
		var wg sync.WaitGroup
		for i, id := range ids {
			wg.Go(func() { res[i] = e.runCtx(e.ctx, args(id)...) })
		}
		wg.Wait()
		suite.ops.Add(count)
		return res
	}
	for _, r := range parallel(func(id string) []string { return []string{"network", "connect", n.name, id} }) {
		if r.code != 0 {
			t.Errorf("concurrent connect: %s", r)
		}
	}
	info := e.inspectNet(n)
	var addrs, hostIfs []string
	for _, a := range info.Attachments {
		addrs = append(addrs, a.Address)
		hostIfs = append(hostIfs, a.HostIf)
	}
	slices.Sort(addrs)
	if len(addrs) != count || len(slices.Compact(addrs)) != count {
		t.Errorf("%d attachments with addresses %v, want %d distinct", len(info.Attachments), addrs, count)
	}
	ports := n.ports(t)
	slices.Sort(ports)
	slices.Sort(hostIfs)
	if !slices.Equal(ports, hostIfs) {
		t.Errorf("bridge ports %v, attachments' host interfaces %v", ports, hostIfs)
	}
	for _, r := range parallel(func(id string) []string { return []string{"network", "disconnect", n.name, id} }) {
		if r.code != 0 {
			t.Errorf("concurrent disconnect: %s", r)
		}
	}
	if info := e.inspectNet(n); len(info.Attachments) > 0 {
		t.Errorf("attachments left: %+v", info.Attachments)
	}
	if p := n.ports(t); len(p) > 0 {
		t.Errorf("host interfaces left on the bridge: %v", p)
	}
	if s := strings.Join(ports, ""); s == "" && count > 0 {
		t.Errorf("no bridge ports were seen while attached")
	}
}
