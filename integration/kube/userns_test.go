//go:build linux

package kube

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go/features"
	"golang.org/x/sys/unix"
)

// usernsHostID is the first host ID the user-namespace containers map their root to.
const usernsHostID = 300000

// usernsScript prints the container's ID map and IDs, and whether a recursive read-only mount covers
// a submount (rro).
const usernsScript = `echo "map: $(cat /proc/self/uid_map)"
echo "id: $(id -u):$(id -g)"
if touch /rro/sub/x 2>/dev/null; then echo "rro-sub: writable"; else echo "rro-sub: read-only"; fi
if touch /rro/y 2>/dev/null; then echo "rro: writable"; else echo "rro: read-only"; fi`

// idmapScript prints how the container sees a host-root-owned file through an ID-mapped mount and
// writes /idm/made through it.
const idmapScript = `set -e
echo "map: $(cat /proc/self/uid_map)"
echo "owner: $(stat -c %u:%g /idm/owned)"
echo made > /idm/made`

// runtimeFeatures is `knast features`, what containerd 2.x reads through the runc shim.
func runtimeFeatures(t *testing.T) *features.Features {
	t.Helper()
	r := run(t.Context(), nil, knastBin, "features")
	var f features.Features
	if !r.ok() || json.Unmarshal([]byte(r.Stdout), &f) != nil {
		t.Fatalf("knast features: %s", r)
	}
	return &f
}

// usernsClaimed reports what containerd 2.x concludes from features: user namespaces need the "user"
// namespace, ID-mapped volumes for them the idmap extension, recursive read-only mounts the "rro" option.
func usernsClaimed(f *features.Features) (userns, idmap, rro bool) {
	if f.Linux != nil && f.Linux.MountExtensions != nil && f.Linux.MountExtensions.IDMap != nil && f.Linux.MountExtensions.IDMap.Enabled != nil {
		idmap = *f.Linux.MountExtensions.IDMap.Enabled && slices.Contains(f.MountOptions, "idmap")
	}
	userns = f.Linux != nil && slices.Contains(f.Linux.Namespaces, "user")
	return userns, idmap, slices.Contains(f.MountOptions, "rro")
}

// TestUserNamespaces checks that what `knast features` claims for containerd 2.x's CRI (user
// namespaces, ID-mapped mounts, recursive read-only mounts) works through containerd's runc shim, and
// that what it does not claim is refused clearly rather than failing midway.
func TestUserNamespaces(t *testing.T) {
	f := runtimeFeatures(t)
	userns, idmap, rro := usernsClaimed(f)
	if !userns || !rro {
		t.Skipf("knast features claims user namespaces: %v, rro: %v; nothing to hold it to", userns, rro)
	}
	n := startNode(t)

	// containerd 1.6's CRI has no user namespaces; 2.x maps a hostUsers: false pod itself.
	t.Run("cri-pod", func(t *testing.T) { testCRIUserns(t, n.with(t)) })

	// The same runtime path without the CRI: ctr asks the shim for a container in a user namespace
	// with an rro mount, then with an ID-mapped bind mount: what containerd 2.x's CRI sends for a
	// hostUsers: false pod and its volumes.
	t.Run("ctr-userns-rro", func(t *testing.T) { testCtrUsernsRRO(t, n.with(t)) })
	t.Run("ctr-userns-idmap", func(t *testing.T) { testCtrUsernsIDMap(t, n.with(t), idmap) })
}

func testCRIUserns(t *testing.T, n *node) {
	n.pull()
	ids := []map[string]any{{"host_id": usernsHostID, "container_id": 0, "length": 65536}}
	pod := map[string]any{
		"metadata":      map[string]any{"name": "knast-userns", "namespace": "knast-kube", "uid": "knast-userns-uid", "attempt": 0},
		"hostname":      "knast-userns",
		"log_directory": filepath.Join(n.dir, "logs", "knast-userns"),
		"linux": map[string]any{
			"cgroup_parent": n.cgroupParent,
			"security_context": map[string]any{"namespace_options": map[string]any{
				"network": 0, "pid": 1, "ipc": 0,
				// mode 0 is POD: what the kubelet sends for hostUsers: false.
				"userns_options": map[string]any{"mode": 0, "uids": ids, "gids": ids},
			}},
		},
	}
	podCfg := n.writeJSON("userns-pod.json", pod)
	r := n.crictl("runp", "--runtime", "knast", podCfg)
	if !r.ok() {
		t.Fatalf("runp with userns_options: %s\n%s", r, n.diag())
	}
	podID := strings.TrimSpace(r.Stdout)
	defer n.removePod(podID)
	c := n.startContainer(podID, podCfg, "main", "sh", "-c", "cat /proc/self/uid_map; id -u")
	if code := n.waitExited(c); code != 0 {
		t.Fatalf("userns container exited %d: %s", code, n.crictl("logs", c))
	}
	logs := n.crictl("logs", c).Stdout
	uidMap := strings.Fields(logs)
	ver := containerdVersion(t)
	if len(uidMap) >= 3 && uidMap[0] == "0" && uidMap[1] == "0" {
		if ver.major < 2 {
			t.Skipf("containerd %s's CRI does not implement user namespaces: it ran the pod with the host's "+
				"IDs (uid_map %q) and ignored linux.security_context.namespace_options.userns_options "+
				"(CRI user namespaces arrived in containerd 1.7, with ID-mapped volumes in 2.0); "+
				"ctr-idmap-rro drives the same runtime path", ver.text, strings.Join(uidMap[:3], " "))
		}
		t.Fatalf("containerd %s ran a userns_options pod with the host's IDs: uid_map %q", ver.text, logs)
	}
	if want := fmt.Sprintf("0 %d 65536", usernsHostID); !strings.HasPrefix(strings.Join(uidMap, " "), want) {
		t.Errorf("userns pod: uid_map %q, want %q", logs, want)
	}
}

type version struct {
	text         string
	major, minor int
}

// containerdVersion parses `containerd --version` ("containerd github.com/containerd/containerd 1.6.20~ds1 ...").
func containerdVersion(t *testing.T) version {
	t.Helper()
	r := run(t.Context(), nil, "containerd", "--version")
	m := regexp.MustCompile(`\b(v?(\d+)\.(\d+)\.\d+\S*)`).FindStringSubmatch(r.Stdout)
	if m == nil {
		t.Fatalf("containerd --version: no version in %s", r)
	}
	major, _ := strconv.Atoi(m[2])
	minor, _ := strconv.Atoi(m[3])
	return version{text: m[1], major: major, minor: minor}
}

// ctrUsernsNS is the containerd namespace of the ctr subtests.
const ctrUsernsNS = "knast-userns"

// ctrRunUserns runs script with ctr in a user namespace mapping root to usernsHostID, with the extra
// --mount flags, and returns its output lines (blanks collapsed) after checking it left nothing in
// knast's root.
func ctrRunUserns(t *testing.T, n *node, name, script string, mounts ...string) []string {
	t.Helper()
	r := ctrRunUsernsResult(t, n, name, script, mounts...)
	if !r.ok() {
		t.Fatalf("ctr run in a user namespace: %s\n%s", r, n.diag())
	}
	if r := run(n.ctx, nil, knastBin, "--root", n.ctrRuntimeRoot(), "list", "-q"); !r.ok() || strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("knast still lists containers after ctr run --rm: %s", r)
	}
	got := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	for i := range got {
		got[i] = strings.Join(strings.Fields(got[i]), " ")
	}
	return got
}

// ctrRunUsernsResult runs script with ctr in a user namespace (host IDs from usernsHostID) and returns
// ctr's result.
func ctrRunUsernsResult(t *testing.T, n *node, name, script string, mounts ...string) result {
	t.Helper()
	ctr := func(args ...string) result {
		return run(n.ctx, nil, append([]string{"ctr", "--address", n.sock, "--namespace", ctrUsernsNS}, args...)...)
	}
	if r := ctr("images", "pull", "--plain-http", n.busybox); !r.ok() {
		t.Fatalf("ctr pull: %s", r)
	}
	m := fmt.Sprintf("0:%d:65536", usernsHostID)
	// --runc-binary and --runc-root are lost with --uidmap in ctr 1.6: the "runc" the shim finds on
	// containerd's PATH runs knast (see runcShimPath).
	args := []string{"run", "--rm", "--runc-binary", knastBin, "--runc-root", n.ctrRuntimeRoot(), "--uidmap", m, "--gidmap", m}
	for _, mnt := range mounts {
		args = append(args, "--mount", mnt)
	}
	args = append(args, n.busybox, fmt.Sprintf("%s-%d", name, os.Getpid()), "sh", "-c", script)
	return ctr(args...)
}

func wantLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("inside the userns container: want line %q; got %q", w, got)
		}
	}
}

func testCtrUsernsRRO(t *testing.T, n *node) {
	// /rro: a read-only bind whose submount (a tmpfs) is read-only too only with rro.
	rroDir := filepath.Join(n.dir, "rro")
	sub := filepath.Join(rroDir, "sub")
	if err := os.MkdirAll(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", sub, "tmpfs", 0, "mode=0777"); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", sub, err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	got := ctrRunUserns(t, n, "userns-rro", usernsScript, "type=bind,src="+rroDir+",dst=/rro,options=rbind:rro")
	wantLines(t, got,
		fmt.Sprintf("map: 0 %d 65536", usernsHostID),
		"id: 0:0",
		"rro-sub: read-only",
		"rro: read-only",
	)
}

func testCtrUsernsIDMap(t *testing.T, n *node, claimed bool) {
	// /idm: owned by the host's root, so only an ID-mapped mount lets the container's root (host
	// uid 300000) see it as its own and write to it.
	idm := filepath.Join(n.dir, "idm")
	if err := os.MkdirAll(idm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(idm, "owned"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	mount := "type=bind,src=" + idm + ",dst=/idm,options=rbind:rw:idmap"
	if !claimed {
		// features says no: the create must be refused up front, naming the mount, and leave nothing.
		r := ctrRunUsernsResult(t, n, "userns-idmap", idmapScript, mount)
		if r.ok() || !strings.Contains(r.Stdout+r.Stderr, "knast makes ID-mapped mounts only for containers without a user namespace") {
			t.Fatalf("an idmap mount in a user namespace, which features does not claim: want a clear refusal, got %s", r)
		}
		if r := run(n.ctx, nil, knastBin, "--root", n.ctrRuntimeRoot(), "list", "-q"); !r.ok() || strings.TrimSpace(r.Stdout) != "" {
			t.Errorf("knast lists containers after the refused create: %s", r)
		}
		return
	}
	got := ctrRunUserns(t, n, "userns-idmap", idmapScript, mount)
	wantLines(t, got,
		fmt.Sprintf("map: 0 %d 65536", usernsHostID),
		"owner: 0:0", // host root through the ID-mapped mount (not 65534, the overflow ID)
	)
	// Written by the container's root through the ID-mapped mount: host root owns it.
	fi, err := os.Stat(filepath.Join(idm, "made"))
	if err != nil {
		t.Fatalf("the container's write through the idmap mount: %v", err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/idm/made is owned by %d:%d on the host, want 0:0 (mapped back)", st.Uid, st.Gid)
	}
}
