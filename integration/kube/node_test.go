//go:build linux

package kube

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

// deployDir is the repository's deploy/ directory, seen from this package's directory (go test's
// working directory): the test runs containerd with the shipped config and conflist.
const deployDir = "../../deploy"

// pauseC is the sandbox ("pause") container: PID 1 of the pod, it reaps children and waits for a
// signal. The test compiles it statically, since the test registry has no pause image to pull.
const pauseC = `#include <signal.h>
#include <stddef.h>
#include <sys/wait.h>
#include <unistd.h>

static void quit(int sig) { (void)sig; _exit(0); }
static void reap(int sig) { (void)sig; while (waitpid(-1, NULL, WNOHANG) > 0) {} }

int main(void) {
	struct sigaction sa = {0};
	sa.sa_handler = quit;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sa.sa_handler = reap;
	sa.sa_flags = SA_NOCLDSTOP;
	sigaction(SIGCHLD, &sa, NULL);
	sigset_t none;
	sigemptyset(&none);
	for (;;) sigsuspend(&none);
}
`

// node is one private Kubernetes node runtime: containerd with the CRI plugin and the knast handler
// on a socket under dir, a local registry holding the pause and busybox images, and knast-cni.
type node struct {
	t        *testing.T
	ctx      context.Context
	dir      string
	sock     string
	registry string // host:port of the local docker-registry
	pause    string // image references in the registry
	busybox  string
	// runtimeRoot is the knast --root the runc shim passes (the handler's Root option plus containerd's
	// namespace); knast keeps its per-container state there.
	runtimeRoot  string
	cgroupParent string // the pods' cgroup_parent, as a kubelet would give
	cniData      string // knast-cni's dataDir
	netName      string // the conflist's network name, which is knast-cni's network
	bridge       string
	subnet       netip.Prefix
	crictlBin    string
	crictlCfg    string
	logPath      string
}

// criNamespace is the containerd namespace the CRI plugin uses.
const criNamespace = "k8s.io"

// startNode starts the registry and containerd; everything is stopped and removed when t ends.
func startNode(t *testing.T) *node {
	t.Helper()
	testutil.RequireRoot(t)
	requireTools(t, "containerd", "ctr", "containerd-shim-runc-v2", "docker-registry", "gcc", "nft", "ip")
	// Not t.TempDir: unix socket paths must stay short, and the dir must outlive the cleanups.
	dir, err := os.MkdirTemp("", "kk-")
	if err != nil {
		t.Fatal(err)
	}
	// Searchable by all: a container in a user namespace reaches its rootfs under dir as a host
	// uid other than root.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	id := os.Getpid()
	n := &node{
		t:            t,
		ctx:          t.Context(),
		dir:          dir,
		sock:         filepath.Join(dir, "c.sock"),
		runtimeRoot:  filepath.Join(dir, "knast-root", criNamespace),
		cgroupParent: fmt.Sprintf("/knast-kube-%d", id),
		cniData:      filepath.Join(dir, "cni-data"),
		// Unique per test process: other suites make bridges and subnets at the same time.
		bridge:    fmt.Sprintf("kk%d", id%10_000_000),
		subnet:    netip.MustParsePrefix(fmt.Sprintf("10.233.%d.0/24", 16+id%200)),
		crictlBin: crictlPath(t),
		crictlCfg: filepath.Join(dir, "crictl.yaml"),
		logPath:   filepath.Join(dir, "containerd.log"),
	}
	t.Cleanup(n.cleanupDir)
	n.registry = testutil.StartRegistry(t)
	n.pushImages()
	n.installCNI()
	n.startContainerd()
	return n
}

// cleanupDir runs last (registered first): it unmounts what is left under dir and removes it, and
// removes the pods' cgroup parent and the CNI bridge, which this test made.
func (n *node) cleanupDir() {
	// knast-cni keeps the network (bridge, NAT table) for the next pod, as a node would; the test
	// made it, so it removes it, through the network store like `knast network rm`.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := network.New(network.Options{StorageDir: n.cniData}).Remove(ctx, n.netName); err != nil && !errors.Is(err, network.ErrNotExist) {
		n.t.Errorf("cleanup: remove network %s: %v", n.netName, err)
	}
	if _, err := os.Stat(filepath.Join("/sys/class/net", n.bridge)); err == nil {
		exec.Command("ip", "link", "del", n.bridge).Run()
	}
	mounts, _ := testutil.MountsUnder(n.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		unix.Unmount(mounts[i], unix.MNT_DETACH)
	}
	if err := os.RemoveAll(n.dir); err != nil {
		n.t.Errorf("cleanup: %v", err)
	}
	for _, cg := range cgroupDirs(n.cgroupParent) {
		removeCgroupTree(cg)
	}
}

// pushImages builds the pause image (a static C binary) and a busybox image, and pushes both to the
// registry with knast itself.
func (n *node) pushImages() {
	t := n.t
	n.pause = n.registry + "/knast-kube/pause:1"
	n.busybox = n.registry + "/knast-kube/busybox:1"

	pauseRoot := filepath.Join(n.dir, "img", "pause")
	if err := os.MkdirAll(pauseRoot, 0o755); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(n.dir, "img", "pause.c")
	if err := os.WriteFile(src, []byte(pauseC), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := run(n.ctx, nil, "gcc", "-static", "-Os", "-s", "-o", filepath.Join(pauseRoot, "pause"), src); !r.ok() {
		t.Fatalf("compile pause (static glibc comes with libc6-dev): %s", r)
	}
	bbRoot := filepath.Join(n.dir, "img", "busybox")
	if err := testutil.BusyboxRootfs(bbRoot); err != nil {
		t.Fatal(err)
	}
	images := []struct {
		ref, root string
		cfg       testutil.ImageConfig
	}{
		{n.pause, pauseRoot, testutil.ImageConfig{Name: n.pause, Cmd: []string{"/pause"}}},
		{n.busybox, bbRoot, testutil.ImageConfig{Name: n.busybox, Cmd: []string{"sh"},
			Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}}},
	}
	knast := []string{knastBin, "--root", filepath.Join(n.dir, "img", "root"), "--storage", filepath.Join(n.dir, "img", "storage")}
	for _, img := range images {
		archive := img.root + ".tar"
		f, err := os.Create(archive)
		if err != nil {
			t.Fatal(err)
		}
		err = testutil.WriteOCIArchive(f, img.root, img.cfg)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		if r := run(n.ctx, nil, append(knast, "image", "load", "-i", archive)...); !r.ok() {
			t.Fatalf("load %s: %s", img.ref, r)
		}
		if r := run(n.ctx, nil, append(knast, "push", "-q", "--tls-verify=false", img.ref)...); !r.ok() {
			t.Fatalf("push %s: %s", img.ref, r)
		}
	}
}

// installCNI runs deploy/install.sh with private directories and writes the shipped conflist with
// this test's bridge, subnet and data dir.
func (n *node) installCNI() {
	t := n.t
	r := run(n.ctx, nil, "sh", filepath.Join(deployDir, "install.sh"), "--binary", knastBin,
		"--prefix", filepath.Join(n.dir, "usr"), "--cni-bin-dir", filepath.Join(n.dir, "cni", "bin"),
		"--cni-conf-dir", filepath.Join(n.dir, "cni", "net.d"))
	if !r.ok() {
		t.Fatalf("install.sh: %s", r)
	}
	link := filepath.Join(n.dir, "cni", "bin", "knast-cni")
	if dst, err := os.Readlink(link); err != nil || dst != filepath.Join(n.dir, "usr", "bin", "knast") {
		t.Fatalf("install.sh: %s -> %q (%v), want the installed knast", link, dst, err)
	}
	conf := filepath.Join(n.dir, "cni", "net.d", "10-knast.conflist")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatalf("install.sh did not install the conflist: %v", err)
	}
	var list map[string]any
	if err := json.Unmarshal(data, &list); err != nil {
		t.Fatalf("%s: %v", conf, err)
	}
	plugins, _ := list["plugins"].([]any)
	if len(plugins) != 1 {
		t.Fatalf("%s: want one plugin, got %v", conf, list["plugins"])
	}
	p := plugins[0].(map[string]any)
	if p["type"] != "knast-cni" {
		t.Fatalf("%s: plugin type %v, want knast-cni", conf, p["type"])
	}
	n.netName = "knast-kube-" + n.bridge
	list["name"] = n.netName
	p["bridge"], p["subnet"], p["dataDir"] = n.bridge, n.subnet.String(), n.cniData
	if data, err = json.MarshalIndent(list, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(conf, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// containerdConfig is deploy/containerd/config.toml with this node's paths, a private root, state
// and sockets, the local registry as a plain-HTTP mirror and the test's pause image.
func (n *node) containerdConfig() string {
	t := n.t
	data, err := os.ReadFile(filepath.Join(deployDir, "containerd", "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := string(data)
	cri := `[plugins."io.containerd.grpc.v1.cri"]` + "\n"
	replace := []struct{ old, new string }{
		{"version = 2\n", fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %q

[ttrpc]
  address = %q

[debug]
  address = %q
  level = "debug"

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(n.dir, "root"), filepath.Join(n.dir, "state"), n.sock, n.sock+".ttrpc",
			filepath.Join(n.dir, "debug.sock"), filepath.Join(n.dir, "opt"))},
		// The host may have the AppArmor module without profiles loaded for containerd.
		{cri, cri + fmt.Sprintf(`  sandbox_image = %q
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  # Network namespaces under the private state dir, not /var/run/netns.
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # This host (CI's too) may withhold CAP_SYS_RESOURCE, so no process can lower an OOM score: keep
  # the pause container's -998 and the containers' scores at or above containerd's own.
  restrict_oom_score_adj = true
`, n.pause)},
		{"disable_apparmor = false", "disable_apparmor = true"},
		{`"/usr/local/bin/knast"`, fmt.Sprintf("%q", knastBin)},
		{`"/run/containerd/knast"`, fmt.Sprintf("%q", filepath.Dir(n.runtimeRoot))},
		{`"/opt/cni/bin"`, fmt.Sprintf("%q", filepath.Join(n.dir, "cni", "bin"))},
	}
	for _, r := range replace {
		if !strings.Contains(cfg, r.old) {
			t.Fatalf("deploy/containerd/config.toml no longer has %q", r.old)
		}
		cfg = strings.ReplaceAll(cfg, r.old, r.new)
	}
	if !strings.Contains(cfg, `"/etc/cni/net.d"`) {
		t.Fatal(`deploy/containerd/config.toml no longer has "/etc/cni/net.d"`)
	}
	cfg = strings.ReplaceAll(cfg, `"/etc/cni/net.d"`, fmt.Sprintf("%q", filepath.Join(n.dir, "cni", "net.d")))
	// The local registry speaks plain HTTP: a hosts.toml under registry.config_path says so.
	hosts := filepath.Join(n.dir, "certs.d")
	if err := os.MkdirAll(filepath.Join(hosts, n.registry), 0o755); err != nil {
		t.Fatal(err)
	}
	hostsTOML := fmt.Sprintf("server = \"http://%[1]s\"\n\n[host.\"http://%[1]s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", n.registry)
	if err := os.WriteFile(filepath.Join(hosts, n.registry, "hosts.toml"), []byte(hostsTOML), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg + fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = %q
`, hosts)
}

func (n *node) startContainerd() {
	t := n.t
	cfgPath := filepath.Join(n.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(n.containerdConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	crictlCfg := fmt.Sprintf("runtime-endpoint: unix://%[1]s\nimage-endpoint: unix://%[1]s\ntimeout: 60\ndebug: false\npull-image-on-create: false\n", n.sock)
	if err := os.WriteFile(n.crictlCfg, []byte(crictlCfg), 0o600); err != nil {
		t.Fatal(err)
	}
	logF, err := os.Create(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("containerd", "--config", cfgPath)
	cmd.Env = append(os.Environ(), "PATH="+n.runcShimPath()+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logF, logF
	// Its own process group, so a Ctrl-C on the test does not reach it before the cleanup runs.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logF.Close()
		t.Fatalf("start containerd: %v", err)
	}
	logF.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() { n.stopContainerd(cmd, exited) })

	msg := eventually(30*time.Second, func() string {
		select {
		case err := <-exited:
			exited <- err
			return fmt.Sprintf("containerd exited: %v", err)
		default:
		}
		r := n.crictl("info")
		if !r.ok() {
			return r.String()
		}
		// The CRI plugin reports NetworkReady once it has loaded the knast-cni conflist.
		var info struct {
			Status struct {
				Conditions []struct {
					Type    string `json:"type"`
					Status  bool   `json:"status"`
					Message string `json:"message"`
				} `json:"conditions"`
			} `json:"status"`
		}
		if err := json.Unmarshal([]byte(r.Stdout), &info); err != nil {
			return fmt.Sprintf("crictl info: %v\n%s", err, r.Stdout)
		}
		for _, c := range info.Status.Conditions {
			if !c.Status {
				return fmt.Sprintf("condition %s false: %s", c.Type, c.Message)
			}
		}
		return ""
	})
	if msg != "" {
		t.Fatalf("containerd's CRI did not come up: %s\n%s", msg, n.logTail())
	}
}

// stopContainerd removes the pods a failed test left, then stops containerd.
func (n *node) stopContainerd(cmd *exec.Cmd, exited chan error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if r := run(ctx, nil, n.crictlArgs("pods", "-q")...); r.ok() {
		for _, id := range strings.Fields(r.Stdout) {
			n.t.Logf("cleanup: removing pod %s left by a test", id)
			run(ctx, nil, n.crictlArgs("stopp", id)...)
			run(ctx, nil, n.crictlArgs("rmp", "-f", id)...)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-exited
	}
}

func (n *node) crictlArgs(args ...string) []string {
	return append([]string{n.crictlBin, "--config", n.crictlCfg}, args...)
}

// crictl runs crictl against this node's containerd.
func (n *node) crictl(args ...string) result {
	return run(n.ctx, nil, n.crictlArgs(args...)...)
}

// diag is what a failure report needs: knast's log.json files in the shims' bundles and the errors
// in containerd's log.
func (n *node) diag() string {
	var b strings.Builder
	filepath.WalkDir(filepath.Join(n.dir, "state"), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "log.json" {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && len(data) > 0 {
			fmt.Fprintf(&b, "== %s\n%s\n", p, data)
		}
		return nil
	})
	return b.String() + n.logTail()
}

func (n *node) logTail() string {
	data, _ := os.ReadFile(n.logPath)
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.Contains(l, "level=error") || strings.Contains(l, "level=warn") {
			keep = append(keep, l)
		}
	}
	if len(keep) > 30 {
		keep = keep[len(keep)-30:]
	}
	return "== containerd log (errors and warnings):\n" + strings.Join(keep, "\n")
}

// cgroupDirs returns path on every mounted cgroup hierarchy (v1 controllers and v2) where it exists.
func cgroupDirs(path string) []string {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		// mountinfo: ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		fs := strings.Fields(post)
		f := strings.Fields(pre)
		if len(fs) == 0 || len(f) < 5 || (fs[0] != "cgroup" && fs[0] != "cgroup2") {
			continue
		}
		p := filepath.Join(f[4], path)
		if _, err := os.Stat(p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// removeCgroupTree removes the cgroup directory p and those below it, deepest first.
func removeCgroupTree(p string) {
	ents, _ := os.ReadDir(p)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroupTree(filepath.Join(p, e.Name()))
		}
	}
	os.Remove(p)
}

// runcShimPath returns a directory holding a "runc" that runs knast with the --root of ctrRuntimeRoot.
// ctr 1.6 sends task options of its own when given --uidmap (the pipes' owner) and they replace the
// container's runtime options, --runc-binary and --runc-root included; the shim then runs "runc"
// from containerd's PATH with its default root. The CRI handler names knast itself and never gets here.
func (n *node) runcShimPath() string {
	dir := filepath.Join(n.dir, "runc-path")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		n.t.Fatal(err)
	}
	script := fmt.Sprintf("#!/bin/sh\n# The shim passes --root ROOT first; knast uses the test's root instead.\nif [ \"$1\" = --root ]; then shift 2; fi\nexec %s --root %s \"$@\"\n",
		knastBin, n.ctrRuntimeRoot())
	if err := os.WriteFile(filepath.Join(dir, "runc"), []byte(script), 0o755); err != nil {
		n.t.Fatal(err)
	}
	return dir
}

// ctrRuntimeRoot is knast's --root for containers that ctr starts (the runc wrapper's).
func (n *node) ctrRuntimeRoot() string {
	return filepath.Join(n.dir, "knast-root", "ctr")
}
