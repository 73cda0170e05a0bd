//go:build linux

// Package network_test drives `knast network` against the real kernel: bridges, pairs into container
// namespaces, IPAM under concurrency, masquerade to a namespace standing for the outside world, published
// ports (host, loopback, other containers, hairpin). Every test uses its own --storage, --root, network
// names, bridges, subnets (10.231.10x.0/24) and host ports, and proves it left nothing behind.
package network_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/vishvananda/netns"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

var knastBin string

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping network integration tests: they need root (namespaces, netlink, nftables)")
		return 0
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			fmt.Fprintf(os.Stderr, "network integration tests check the kernel with %s: apt-get install iproute2 nftables: %v\n", tool, err)
			return 1
		}
	}
	dir, err := os.MkdirTemp("", "knast-network-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Every test's t.TempDir lives under dir, so the suite's leak check can scope mounts to it.
	os.Setenv("TMPDIR", dir)
	if knastBin, err = testutil.BuildKnast(context.Background(), dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	// The tests' bridges are kni1NN, their containers' host ends knv...; their storage dirs are not the
	// default, so their NAT tables are knast-<hash>.
	scope := testutil.Scope{Paths: []string{dir}, LinkPrefixes: []string{"kni1", "knv"}, NftTables: []string{"knast-"}}
	return testutil.CheckSuite("network integration", scope, m.Run)
}

// world is one test's private knast: its own --storage (networks.db, NAT table) and --root.
type world struct {
	t       *testing.T
	ctx     context.Context
	storage string
	root    string
	tmp     string
}

func newWorld(t *testing.T) *world {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	t.Cleanup(cancel)
	base := t.TempDir()
	w := &world{t: t, ctx: ctx, storage: filepath.Join(base, "storage"), root: filepath.Join(base, "root"), tmp: base}
	t.Cleanup(func() { testutil.RemoveCgroupParent(w.root) }) // runs last: after the containers are gone
	for _, d := range []string{w.storage, w.root} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("knast %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(r.args, " "), r.code, r.stdout, r.stderr)
}

// knast runs the binary with the world's --storage and --root. Output goes through files: a created
// container inherits knast's stdio, and a pipe would stay open for its lifetime.
func (w *world) knast(args ...string) result {
	w.t.Helper()
	return w.knastCtx(w.ctx, args...)
}

func (w *world) knastCtx(ctx context.Context, args ...string) result {
	full := append([]string{"--storage", w.storage, "--root", w.root}, args...)
	res := result{args: full}
	outF, err := os.CreateTemp(w.tmp, "out-*")
	if err != nil {
		res.code, res.stderr = -1, err.Error()
		return res
	}
	defer os.Remove(outF.Name())
	defer outF.Close()
	errF, err := os.CreateTemp(w.tmp, "err-*")
	if err != nil {
		res.code, res.stderr = -1, err.Error()
		return res
	}
	defer os.Remove(errF.Name())
	defer errF.Close()
	cmd := exec.CommandContext(ctx, knastBin, full...)
	cmd.Stdout, cmd.Stderr = outF, errF
	cmd.WaitDelay = 5 * time.Second
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		res.code = ee.ExitCode()
	case err != nil:
		res.code = -1
		res.stderr = err.Error()
	}
	out, _ := os.ReadFile(outF.Name())
	errOut, _ := os.ReadFile(errF.Name())
	res.stdout, res.stderr = string(out), res.stderr+string(errOut)
	return res
}

func (w *world) must(args ...string) result {
	w.t.Helper()
	r := w.knast(args...)
	if r.code != 0 {
		w.t.Fatalf("%s", r)
	}
	return r
}

// bundle makes a busybox bundle running script, with a new network namespace (knast spec's default)
// and a writable rootfs; files are written into the rootfs.
func (w *world) bundle(script string, files map[string]string) string {
	w.t.Helper()
	b := testutil.Bundle(w.t, knastBin, func(s *specs.Spec) {
		s.Process.Terminal = false
		s.Process.Args = []string{"sh", "-c", script}
		s.Root.Readonly = false
		// ping needs a raw socket, which runc's default capability set leaves out.
		if c := s.Process.Capabilities; c != nil {
			c.Bounding = append(c.Bounding, "CAP_NET_RAW")
			c.Effective = append(c.Effective, "CAP_NET_RAW")
			c.Permitted = append(c.Permitted, "CAP_NET_RAW")
		}
		hasNet := false
		for _, ns := range s.Linux.Namespaces {
			hasNet = hasNet || ns.Type == specs.NetworkNamespace
		}
		if !hasNet {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.NetworkNamespace})
		}
	})
	for p, content := range files {
		full := filepath.Join(b, "rootfs", p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			w.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			w.t.Fatal(err)
		}
	}
	return b
}

// container creates a container from bundle (its namespace exists from then on) and registers its
// removal; start runs its process.
func (w *world) container(id, bundle string) {
	w.t.Helper()
	w.must("create", "--bundle", bundle, id)
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		w.knastCtx(ctx, "delete", "--force", id)
	})
}

// connect attaches a container and returns its address (without the prefix length).
func (w *world) connect(netName, id string, extra ...string) string {
	w.t.Helper()
	r := w.must(append([]string{"network", "connect"}, append(extra, netName, id)...)...)
	f := strings.Fields(r.stdout)
	if len(f) != 3 || f[0] != id {
		w.t.Fatalf("connect output %q: want ID IFNAME ADDRESS", r.stdout)
	}
	return strings.Split(f[2], "/")[0]
}

// createNetwork makes a network and registers its removal (after every container's disconnect).
func (w *world) createNetwork(name string, args ...string) {
	w.t.Helper()
	w.must(append([]string{"network", "create", name}, args...)...)
	w.t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := w.knastCtx(ctx, "network", "inspect", name)
		var ins []struct {
			Attachments []network.Attachment `json:"attachments"`
		}
		if r.code == 0 && json.Unmarshal([]byte(r.stdout), &ins) == nil && len(ins) == 1 {
			for _, a := range ins[0].Attachments {
				w.knastCtx(ctx, "network", "disconnect", name, a.ContainerID)
			}
		}
		w.knastCtx(ctx, "network", "rm", name)
	})
}

// exec runs a command in a container and returns its output.
func (w *world) exec(id string, args ...string) result {
	w.t.Helper()
	return w.knast(append([]string{"exec", id}, args...)...)
}

// eventually retries f until it returns nil or the deadline passes (a server in a container needs a
// moment to listen).
func (w *world) eventually(what string, f func() error) {
	w.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// assertClean fails unless the world left no link, NAT table or lease behind.
func (w *world) assertClean(links ...string) {
	w.t.Helper()
	out, err := exec.Command("ip", "-o", "link").CombinedOutput()
	if err != nil {
		w.t.Fatalf("ip -o link: %v: %s", err, out)
	}
	for _, l := range links {
		if strings.Contains(string(out), " "+l+":") || strings.Contains(string(out), " "+l+"@") {
			w.t.Errorf("link %s left:\n%s", l, out)
		}
	}
	tables, err := exec.Command("nft", "list", "tables").CombinedOutput()
	if err != nil {
		w.t.Fatalf("nft list tables: %v: %s", err, tables)
	}
	if tab := network.NATTable(w.storage); strings.Contains(string(tables)+"\n", "table ip "+tab+"\n") {
		w.t.Errorf("NAT table %s left:\n%s", tab, tables)
	}
	m := network.New(network.Options{StorageDir: w.storage})
	atts, err := m.Attachments(w.ctx, "")
	if err != nil || len(atts) != 0 {
		w.t.Errorf("leases left: %+v, %v", atts, err)
	}
}

// listenIn returns a TCP listener created in the namespace at path.
func listenIn(path, addr string) (net.Listener, error) {
	target, err := netns.GetFromPath(path)
	if err != nil {
		return nil, err
	}
	defer target.Close()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	defer orig.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return nil, err
	}
	l, lerr := net.Listen("tcp4", addr)
	if err := netns.Set(orig); err != nil {
		// The thread is stuck in the other namespace: keep it locked so Go retires it with the goroutine.
		return nil, fmt.Errorf("switch back: %w", err)
	}
	runtime.UnlockOSThread()
	return l, lerr
}
