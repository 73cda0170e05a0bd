//go:build linux

package kube

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

// webPort is where the web container's httpd listens inside its pod.
const webPort = 8080

// webBody is what the web container serves; webScript writes it and starts busybox httpd.
const webBody = "hello from a knast pod"

var webScript = fmt.Sprintf(`mkdir -p /www && echo %q > /www/index.html && echo web: serving && exec httpd -f -vv -p %d -h /www`, webBody, webPort)

// fetchScript fetches URL (retrying while the server starts), prints the body and exits with wget's
// status. No wget -T: Debian's static busybox 1.35 crashes with it outside the host's root.
func fetchScript(url string) string {
	return fmt.Sprintf(`for i in $(seq 100); do if wget -q -O /tmp/body %[1]s; then echo "fetched: $(cat /tmp/body)"; exit 0; fi; sleep 0.1; done; wget -q -O - %[1]s`, url)
}

// podSpec is what the test varies between pods.
type podSpec struct {
	name     string
	hostPort int // published to the pod's webPort when set
}

// pull pulls the busybox image from the local registry through the CRI.
func (n *node) pull() {
	n.t.Helper()
	if r := n.crictl("pull", n.busybox); !r.ok() {
		n.t.Fatalf("pull: %s\n%s", r, n.diag())
	}
	if r := n.crictl("images", "-q"); !strings.Contains(r.Stdout, "sha256:") {
		n.t.Fatalf("images after pull: %s", r)
	}
}

// with returns n reporting to t (a subtest), so its helpers fail the subtest and not its parent.
func (n *node) with(t *testing.T) *node {
	c := *n
	c.t, c.ctx = t, t.Context()
	return &c
}

// runPod writes the sandbox config and runs the pod with the knast handler; it returns the pod ID and
// the config file (crictl create needs it again).
func (n *node) runPod(p podSpec) (string, string) {
	t := n.t
	t.Helper()
	cfg := map[string]any{
		"metadata":      map[string]any{"name": p.name, "namespace": "knast-kube", "uid": p.name + "-uid", "attempt": 0},
		"hostname":      p.name,
		"log_directory": filepath.Join(n.dir, "logs", p.name),
		"linux": map[string]any{
			"cgroup_parent":    n.cgroupParent,
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 0, "pid": 1, "ipc": 0}},
		},
	}
	if p.hostPort != 0 {
		cfg["port_mappings"] = []map[string]any{{"protocol": 0, "container_port": webPort, "host_port": p.hostPort}}
	}
	path := n.writeJSON(p.name+"-pod.json", cfg)
	r := n.crictl("runp", "--runtime", "knast", path)
	if !r.ok() {
		t.Fatalf("runp %s: %s\n%s", p.name, r, n.diag())
	}
	return strings.TrimSpace(r.Stdout), path
}

// startContainer creates and starts a container running command in the pod.
func (n *node) startContainer(pod, podCfg, name string, command ...string) string {
	t := n.t
	t.Helper()
	cfg := map[string]any{
		"metadata": map[string]any{"name": name},
		"image":    map[string]any{"image": n.busybox},
		"command":  command,
		"log_path": name + ".log",
		"linux":    map[string]any{},
	}
	path := n.writeJSON(filepath.Base(podCfg)+"-"+name+".json", cfg)
	r := n.crictl("create", pod, path, podCfg)
	if !r.ok() {
		t.Fatalf("create %s: %s\n%s", name, r, n.diag())
	}
	id := strings.TrimSpace(r.Stdout)
	if r := n.crictl("start", id); !r.ok() {
		t.Fatalf("start %s: %s\n%s", name, r, n.diag())
	}
	return id
}

func (n *node) writeJSON(name string, v any) string {
	n.t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		n.t.Fatal(err)
	}
	p := filepath.Join(n.dir, "cfg", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		n.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		n.t.Fatal(err)
	}
	return p
}

// containerStatus is the part of `crictl inspect -o json` the test reads.
type containerStatus struct {
	Status struct {
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
	} `json:"status"`
	Info struct {
		Pid     int    `json:"pid"`
		Runtime string `json:"runtimeType"`
		Options struct {
			BinaryName string `json:"binary_name"`
			Root       string `json:"root"`
		} `json:"runtimeOptions"`
	} `json:"info"`
}

func (n *node) inspect(id string) (containerStatus, result) {
	var s containerStatus
	r := n.crictl("inspect", "-o", "json", id)
	if r.ok() {
		if err := json.Unmarshal([]byte(r.Stdout), &s); err != nil {
			r.Err = err
		}
	}
	return s, r
}

// waitExited waits for container id to exit and returns its exit code.
func (n *node) waitExited(id string) int {
	n.t.Helper()
	var s containerStatus
	msg := eventually(30*time.Second, func() string {
		var r result
		if s, r = n.inspect(id); !r.ok() {
			return r.String()
		}
		if s.Status.State != "CONTAINER_EXITED" {
			return "state " + s.Status.State
		}
		return ""
	})
	if msg != "" {
		n.t.Fatalf("container %s did not exit: %s\n%s", id, msg, n.diag())
	}
	return s.Status.ExitCode
}

// podIP returns the pod's address as the CRI plugin got it from knast-cni.
func (n *node) podIP(pod string) netip.Addr {
	n.t.Helper()
	r := n.crictl("inspectp", "-o", "json", pod)
	var s struct {
		Status struct {
			Network struct {
				IP string `json:"ip"`
			} `json:"network"`
		} `json:"status"`
	}
	if !r.ok() || json.Unmarshal([]byte(r.Stdout), &s) != nil {
		n.t.Fatalf("inspectp %s: %s", pod, r)
	}
	ip, err := netip.ParseAddr(s.Status.Network.IP)
	if err != nil {
		n.t.Fatalf("pod %s has no address (%q): %v\n%s", pod, s.Status.Network.IP, err, n.diag())
	}
	return ip
}

// freePort returns a TCP port free on the host now, for a hostPort.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// hostAddr returns a non-loopback IPv4 address of this host (traffic to it stays on the host).
func hostAddr() (netip.Addr, bool) {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, false
	}
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP.To4())
		if ok && ip.IsGlobalUnicast() && !ip.IsLoopback() {
			return ip, true
		}
	}
	return netip.Addr{}, false
}

// httpGet fetches url from the host, retrying briefly while the published port comes up.
func httpGet(url string) (string, error) {
	client := &http.Client{Timeout: 3 * time.Second}
	var lastErr error
	for range 30 {
		resp, err := client.Get(url)
		if err == nil {
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(body), nil
			}
			lastErr = fmt.Errorf("%s: %s %v", url, resp.Status, err)
		} else {
			lastErr = err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return "", lastErr
}

// TestPods runs two pods on the knast handler with knast-cni networks: pod A holds a web server and a
// client sharing its network, publishes a hostPort; pod B reaches pod A by its pod IP. Then both pods
// are stopped and removed and nothing may be left.
func TestPods(t *testing.T) {
	n := startNode(t)
	before, err := testutil.TakeSnapshot(n.scope())
	if err != nil {
		t.Fatal(err)
	}
	n.pull()

	hostPort := freePort(t)
	podA, podACfg := n.runPod(podSpec{name: "knast-web", hostPort: hostPort})
	web := n.startContainer(podA, podACfg, "web", "sh", "-c", webScript)
	fetch := n.startContainer(podA, podACfg, "fetch", "sh", "-c", fetchScript(fmt.Sprintf("http://127.0.0.1:%d/index.html", webPort)))
	ipA := n.podIP(podA)

	t.Run("runtime", func(t *testing.T) {
		s, r := n.inspect(web)
		if !r.ok() || s.Status.State != "CONTAINER_RUNNING" {
			t.Fatalf("web: want CONTAINER_RUNNING: %s", r)
		}
		// The handler's options reached the shim, and knast holds the container in the handler's root.
		if s.Info.Options.BinaryName != knastBin {
			t.Errorf("web runs with runtime binary %q, want %s", s.Info.Options.BinaryName, knastBin)
		}
		ls := run(n.ctx, nil, knastBin, "--root", n.runtimeRoot, "list", "-q")
		for _, id := range []string{podA, web} {
			if !strings.Contains(ls.Stdout, id) {
				t.Errorf("knast --root %s list does not show %s: %s", n.runtimeRoot, id, ls)
			}
		}
	})

	t.Run("shared-network-and-logs", func(t *testing.T) {
		if code := n.waitExited(fetch); code != 0 {
			t.Errorf("fetch exited %d, want 0\n%s", code, n.crictl("logs", fetch))
		}
		r := n.crictl("logs", fetch)
		if want := "fetched: " + webBody; !r.ok() || !strings.Contains(r.Stdout, want) {
			t.Errorf("crictl logs fetch: want %q: %s", want, r)
		}
		r = n.crictl("logs", web)
		if !r.ok() || !strings.Contains(r.Stdout+r.Stderr, "web: serving") {
			t.Errorf("crictl logs web: want %q: %s", "web: serving", r)
		}
	})

	t.Run("exec-sync", func(t *testing.T) {
		r := n.crictl("exec", "-s", web, "sh", "-c", "cat /www/index.html; hostname")
		// crictl ends the output with blank lines of its own.
		if want := webBody + "\nknast-web"; !r.ok() || strings.TrimRight(r.Stdout, "\n") != want {
			t.Errorf("crictl exec -s: want %q; got %s\n%s", want, r, n.diag())
		}
		// crictl reports a failed command's status in its error.
		r = n.crictl("exec", "-s", web, "sh", "-c", "exit 3")
		if r.Code == 0 || !strings.Contains(r.Stderr, "exited with 3") {
			t.Errorf("crictl exec -s of exit 3: want a failure naming status 3; got %s", r)
		}
		// The pod's address is on the container's eth0, from knast-cni.
		r = n.crictl("exec", "-s", web, "ip", "-4", "-o", "addr", "show")
		if !r.ok() || !strings.Contains(r.Stdout, ipA.String()+"/") {
			t.Errorf("pod address %s not in the container's interfaces: %s", ipA, r)
		}
	})

	t.Run("stats", func(t *testing.T) {
		var out struct {
			Stats []struct {
				Attributes struct {
					ID string `json:"id"`
				} `json:"attributes"`
				CPU struct {
					Usage struct {
						Value json.Number `json:"value"`
					} `json:"usageCoreNanoSeconds"`
				} `json:"cpu"`
				Memory struct {
					WorkingSet struct {
						Value json.Number `json:"value"`
					} `json:"workingSetBytes"`
				} `json:"memory"`
			} `json:"stats"`
		}
		r := n.crictl("stats", "-o", "json", "--id", web)
		if !r.ok() || json.Unmarshal([]byte(r.Stdout), &out) != nil || len(out.Stats) != 1 {
			t.Fatalf("crictl stats: %s\n%s", r, n.diag())
		}
		st := out.Stats[0]
		mem, _ := strconv.ParseUint(strings.Trim(st.Memory.WorkingSet.Value.String(), `"`), 10, 64)
		cpu, _ := strconv.ParseUint(strings.Trim(st.CPU.Usage.Value.String(), `"`), 10, 64)
		if st.Attributes.ID != web || mem == 0 || cpu == 0 {
			t.Errorf("crictl stats: want web's id, memory and cpu use; got id %q memory %d cpu %d\n%s", st.Attributes.ID, mem, cpu, r.Stdout)
		}
	})

	t.Run("pod-network", func(t *testing.T) {
		if !n.subnet.Contains(ipA) {
			t.Errorf("pod address %s is not in the knast-cni subnet %s", ipA, n.subnet)
		}
		podB, podBCfg := n.runPod(podSpec{name: "knast-client"})
		ipB := n.podIP(podB)
		if ipB == ipA || !n.subnet.Contains(ipB) {
			t.Errorf("pod B address %s: want another address in %s than pod A's %s", ipB, n.subnet, ipA)
		}
		client := n.startContainer(podB, podBCfg, "client", "sh", "-c", fetchScript(fmt.Sprintf("http://%s:%d/index.html", ipA, webPort)))
		if code := n.waitExited(client); code != 0 {
			t.Errorf("pod B could not fetch from pod A at %s: exit %d\n%s", ipA, code, n.crictl("logs", client))
		}
		if r := n.crictl("logs", client); !strings.Contains(r.Stdout, "fetched: "+webBody) {
			t.Errorf("pod B's client: want %q from pod A: %s", webBody, r)
		}
		n.removePod(podB)
	})

	t.Run("host-port", func(t *testing.T) {
		targets := []string{"127.0.0.1"}
		if ip, ok := hostAddr(); ok {
			targets = append(targets, ip.String())
		}
		for _, host := range targets {
			url := fmt.Sprintf("http://%s/index.html", net.JoinHostPort(host, strconv.Itoa(hostPort)))
			body, err := httpGet(url)
			if err != nil || strings.TrimSpace(body) != webBody {
				t.Errorf("hostPort %d from the host (%s): got %q, %v\n%s", hostPort, url, body, err, nftRuleset())
			}
		}
	})

	t.Run("remove-leaves-nothing", func(t *testing.T) {
		n.removePod(podA)
		if r := n.crictl("pods", "-q"); !r.ok() || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("pods left after rmp: %s", r)
		}
		if r := n.crictl("ps", "-a", "-q"); !r.ok() || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("containers left after rmp: %s", r)
		}
		var leaks []string
		eventually(10*time.Second, func() string {
			after, err := testutil.TakeSnapshot(n.scope())
			if err != nil {
				leaks = []string{err.Error()}
				return err.Error()
			}
			leaks = n.withoutParent(before.Leaks(after))
			return strings.Join(leaks, "\n")
		})
		if len(leaks) > 0 {
			t.Errorf("left after the pods were removed:\n  %s", strings.Join(leaks, "\n  "))
		}
		if r := run(n.ctx, nil, knastBin, "--root", n.runtimeRoot, "list", "-q"); !r.ok() || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("knast still lists containers in %s: %s", n.runtimeRoot, r)
		}
		n.checkNetworkGone(hostPort, ipA)
	})
}

// removePod stops and removes a pod (the kubelet's order).
func (n *node) removePod(pod string) {
	n.t.Helper()
	if r := n.crictl("stopp", pod); !r.ok() {
		n.t.Errorf("stopp %s: %s\n%s", pod, r, n.diag())
	}
	if r := n.crictl("rmp", pod); !r.ok() {
		n.t.Errorf("rmp %s: %s\n%s", pod, r, n.diag())
	}
}

// scope is what a removed pod must not leave: mounts under the node's dirs, knast state entries, shims
// of this containerd, cgroups under the pods' parent.
func (n *node) scope() testutil.Scope {
	return testutil.Scope{
		Root:    n.runtimeRoot,
		Paths:   []string{n.dir},
		Token:   n.sock,
		Cgroups: []string{n.cgroupParent},
	}
}

// checkNetworkGone checks that knast-cni released what the pods had: no port on the bridge, no
// address lease, no nft rule for the pod address or the published port.
func (n *node) checkNetworkGone(hostPort int, ips ...netip.Addr) {
	t := n.t
	if ports, err := os.ReadDir(filepath.Join("/sys/class/net", n.bridge, "brif")); err == nil && len(ports) > 0 {
		var names []string
		for _, p := range ports {
			names = append(names, p.Name())
		}
		t.Errorf("bridge %s still has ports %v", n.bridge, names)
	}
	rules := nftRuleset()
	for _, ip := range ips {
		if strings.Contains(rules, ip.String()+" ") || strings.Contains(rules, ip.String()+":") {
			t.Errorf("nft rules still mention pod address %s:\n%s", ip, rules)
		}
	}
	if strings.Contains(rules, fmt.Sprintf("dport %d ", hostPort)) {
		t.Errorf("nft rules still publish port %d:\n%s", hostPort, rules)
	}
	if leases := n.leases(); len(leases) > 0 {
		t.Errorf("knast-cni still holds leases in %s: %v", n.cniData, leases)
	}
}

func nftRuleset() string {
	out, err := exec.Command("nft", "list", "ruleset").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft list ruleset: %v: %s", err, out)
	}
	return string(out)
}

// leases lists the addresses knast-cni still holds on this node's network.
func (n *node) leases() []string {
	atts, err := network.New(network.Options{StorageDir: n.cniData}).Attachments(n.ctx, n.netName)
	if err != nil && !errors.Is(err, network.ErrNotExist) {
		n.t.Errorf("read knast-cni leases in %s: %v", n.cniData, err)
	}
	var out []string
	for _, a := range atts {
		out = append(out, fmt.Sprintf("%s %s on %s", a.ContainerID, a.Address, a.HostIf))
	}
	return out
}

// withoutParent drops the pods' cgroup parent itself from leaks: like a kubelet's pod cgroups, it
// belongs to the caller (the test removes it); what is below it belongs to knast.
func (n *node) withoutParent(leaks []string) []string {
	var out []string
	for _, l := range leaks {
		if !slices.Contains(cgroupDirs(n.cgroupParent), strings.TrimPrefix(l, "cgroup: ")) {
			out = append(out, l)
		}
	}
	return out
}
