//go:build linux

package network_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/testutil"
)

// TestRuntimeAttachesAnnotatedBundle: a bundle whose annotations name a network is attached by create
// (before start: the address is there while the container is "created"), publishes its port, and is
// detached by delete — also by delete --force after the init was killed, the crash case.
func TestRuntimeAttachesAnnotatedBundle(t *testing.T) {
	w := newWorld(t)
	const netName, bridge, port = "kni-rt", "kni105", "28105"
	w.createNetwork(netName, "--subnet", "10.231.105.0/24", "--bridge", bridge)
	b := w.bundle(httpdScript, map[string]string{"www/index.html": "hello from the runtime\n"})
	annotate(t, b, map[string]string{"org.knast.network": netName, "org.knast.network.ports": port + ":80"})

	w.container("kni-rt-web", b)
	atts := w.attachments(netName)
	if len(atts) != 1 || atts[0].ContainerID != "kni-rt-web" || atts[0].IfName != "eth0" {
		t.Fatalf("after create: attachments %+v", atts)
	}
	hostIfs := []string{bridge, atts[0].HostIf}
	w.must("start", "kni-rt-web")
	if r := w.exec("kni-rt-web", "ip", "-4", "addr", "show", "eth0"); !strings.Contains(r.stdout, atts[0].Address.String()) {
		t.Errorf("eth0 in the container: %s", r)
	}
	w.eventually("host -> published port", func() error {
		body, err := httpGet("http://127.0.0.1:" + port + "/")
		if err != nil || body != "hello from the runtime\n" {
			return fmt.Errorf("GET = %q, %v", body, err)
		}
		return nil
	})
	w.must("delete", "--force", "kni-rt-web")
	if atts := w.attachments(netName); len(atts) != 0 {
		t.Errorf("after delete: attachments %+v", atts)
	}
	if _, err := httpGet("http://127.0.0.1:" + port + "/"); err == nil {
		t.Error("the published port still answers after delete")
	}

	// The crash case: the init dies (SIGKILL from outside), and delete --force still releases the lease
	// and removes the host end of the pair.
	w.container("kni-rt-crash", w.withAnnotations(w.bundle("exec sleep 600", nil), map[string]string{"org.knast.network": netName}))
	atts = w.attachments(netName)
	if len(atts) != 1 {
		t.Fatalf("crash container: attachments %+v", atts)
	}
	hostIfs = append(hostIfs, atts[0].HostIf)
	pid := w.pid("kni-rt-crash")
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w.must("delete", "--force", "kni-rt-crash")
	if atts := w.attachments(netName); len(atts) != 0 {
		t.Errorf("after delete --force of a killed container: attachments %+v", atts)
	}

	// Bad annotations: create fails naming the annotation, and leaves no container and no lease.
	bad := w.withAnnotations(w.bundle("exec sleep 600", nil), map[string]string{"org.knast.network": netName, "org.knast.network.ports": "99999:80"})
	if r := w.knast("create", "--bundle", bad, "kni-rt-bad"); r.code == 0 || !strings.Contains(r.stderr, "org.knast.network.ports") {
		t.Errorf("create with a bad port annotation: %s", r)
	}
	if r := w.knast("state", "kni-rt-bad"); r.code == 0 {
		t.Errorf("a failed create left a container: %s", r)
	}
	if atts := w.attachments(netName); len(atts) != 0 {
		t.Errorf("a failed create left leases: %+v", atts)
	}
	w.must("network", "rm", netName)
	w.assertClean(hostIfs...)
}

// TestRunImageNetwork: run --image --network NAME -p attaches the container, writes its /etc/hosts with
// the leased address, and --rm leaves nothing.
func TestRunImageNetwork(t *testing.T) {
	w := newWorld(t)
	const netName, bridge = "kni-img", "kni106"
	w.createNetwork(netName, "--subnet", "10.231.106.0/24", "--bridge", bridge)
	rootfs := filepath.Join(w.tmp, "img-rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(w.tmp, "img.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{Name: "localhost/kni-net:latest", Cmd: []string{"sh"}}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	w.must("image", "load", "-i", archive)

	r := w.must("run", "--image", "localhost/kni-net:latest", "--rm", "--name", "kni-img-run", "--network", netName,
		"-p", "28106:80", "--", "sh", "-c", "ip -4 -o addr show eth0; cat /etc/hosts; ip route")
	if !strings.Contains(r.stdout, "inet 10.231.106.") || !strings.Contains(r.stdout, "default via 10.231.106.1") {
		t.Errorf("run --network: no address or route on eth0:\n%s", r.stdout)
	}
	addr := ""
	for _, f := range strings.Fields(r.stdout) {
		if strings.HasPrefix(f, "10.231.106.") && strings.Contains(f, "/") {
			addr = strings.Split(f, "/")[0]
			break
		}
	}
	if addr == "" || !strings.Contains(r.stdout, addr+"\tkni-img-run") {
		t.Errorf("/etc/hosts does not name the container at %q:\n%s", addr, r.stdout)
	}
	if atts := w.attachments(netName); len(atts) != 0 {
		t.Errorf("after run --rm: attachments %+v", atts)
	}
	if r := w.knast("run", "--image", "localhost/kni-net:latest", "--rm", "-p", "28106:80", "--", "true"); r.code == 0 || !strings.Contains(r.stderr, "--publish needs --network") {
		t.Errorf("-p without a network: %s", r)
	}
	w.must("network", "rm", netName)
	w.assertClean(bridge)
}

func annotate(t *testing.T, bundle string, ann map[string]string) {
	t.Helper()
	s, err := testutil.ReadSpec(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	for k, v := range ann {
		s.Annotations[k] = v
	}
	if err := testutil.WriteSpec(bundle, s); err != nil {
		t.Fatal(err)
	}
}

func (w *world) withAnnotations(bundle string, ann map[string]string) string {
	annotate(w.t, bundle, ann)
	return bundle
}

// attachments lists the network's attachments from the store.
func (w *world) attachments(netName string) []network.Attachment {
	w.t.Helper()
	atts, err := network.New(network.Options{StorageDir: w.storage}).Attachments(w.ctx, netName)
	if err != nil {
		w.t.Fatalf("attachments of %s: %v", netName, err)
	}
	return atts
}

// pid is the container's init pid from knast state.
func (w *world) pid(id string) int {
	w.t.Helper()
	r := w.must("state", id)
	var st specs.State
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Pid <= 0 {
		w.t.Fatalf("state %s: %v: %s", id, err, r.stdout)
	}
	return st.Pid
}
