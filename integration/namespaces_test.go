//go:build linux

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestUTSNamespace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	b := e.bundle("hostname; cat /proc/sys/kernel/hostname", func(s *specs.Spec) { s.Hostname = "knast-uts" })
	if got := e.mustRun("ctr", b); got != "knast-uts\nknast-uts" {
		t.Errorf("hostname inside %q, want knast-uts twice", got)
	}
	if now, _ := os.Hostname(); now != host {
		t.Errorf("host hostname changed: %q -> %q", host, now)
	}
}

func TestPIDNamespace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// The shell is pid 1; /proc is the container's own, so only its processes are listed.
	b := e.bundle(`echo $$; for p in /proc/[0-9]*; do echo ${p#/proc/}; done | sort -n | head -1; cat /proc/1/cmdline | tr '\0' ' '`)
	got := strings.Split(e.mustRun("ctr", b), "\n")
	if len(got) != 3 || got[0] != "1" || got[1] != "1" || !strings.HasPrefix(got[2], "sh -c") {
		t.Errorf("inside: %q, want $$ = 1, lowest pid 1, pid 1 = sh -c", got)
	}
}

// netDevs lists the interfaces of /proc/net/dev output.
func netDevs(out string) []string {
	var devs []string
	for _, l := range strings.Split(out, "\n") {
		name, _, ok := strings.Cut(l, ":")
		if ok {
			devs = append(devs, strings.TrimSpace(name))
		}
	}
	return devs
}

func TestNetNamespace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle("readlink /proc/self/ns/net; cat /proc/net/dev")
	out := e.mustRun("ctr", b)
	if devs := netDevs(out); len(devs) != 2 || devs[0] != "net" || devs[1] != "lo" { // "net:[ino]", then lo
		t.Errorf("interfaces inside %v, want only lo:\n%s", devs, out)
	}
	host, _ := os.Readlink("/proc/self/ns/net")
	if strings.Contains(out, host) {
		t.Errorf("container shares the host net namespace %s", host)
	}
}

func TestJoinNetNamespaceByPath(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("skipping: iproute2 not installed: %v", err)
	}
	e := newEnv(t)
	name := fmt.Sprintf("knast-itest-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "delete", name).Run() })
	path := filepath.Join("/run/netns", name)
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	// A dummy interface identifies the namespace from inside, when the module is available.
	dummy := exec.Command("ip", "netns", "exec", name, "ip", "link", "add", "kn0", "type", "dummy").Run() == nil
	b := e.bundle("readlink /proc/self/ns/net; cat /proc/net/dev", func(s *specs.Spec) {
		for i, n := range s.Linux.Namespaces {
			if n.Type == specs.NetworkNamespace {
				s.Linux.Namespaces[i].Path = path
			}
		}
	})
	out := e.mustRun("ctr", b)
	if want := fmt.Sprintf("net:[%d]", st.Ino); !strings.HasPrefix(out, want) {
		t.Errorf("inside: %q, want net namespace %s", out, want)
	}
	if dummy && !strings.Contains(out, "kn0") {
		t.Errorf("inside: %q, want interface kn0 of the joined namespace", out)
	}
}

// openPathToRoot lets a mapped (unprivileged on the host) container root traverse the test's 0700 temp
// dirs down to the bundle.
func openPathToRoot(t *testing.T, bundle string) {
	t.Helper()
	stop := filepath.Clean(os.TempDir())
	for d := bundle; ; d = filepath.Dir(d) {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(d, fi.Mode().Perm()|0o011); err != nil {
			t.Fatal(err)
		}
		if d == stop || d == "/" {
			return
		}
	}
}

// withUserNS gives the container a user namespace mapping its 0-65535 to the host's hostID onwards.
// A v1 cgroup hierarchy cannot be mounted from a user namespace: its mount is dropped.
func withUserNS(hostID uint32) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
		s.Linux.UIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostID, Size: 65536}}
		s.Linux.GIDMappings = []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostID, Size: 65536}}
		s.Mounts = slices.DeleteFunc(s.Mounts, func(m specs.Mount) bool { return m.Destination == "/sys/fs/cgroup" })
	}
}

func TestUserNamespace(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skipf("skipping: kernel without user namespaces: %v", err)
	}
	e := newEnv(t)
	const hostID = 100000
	b := e.bundle("cat /proc/self/uid_map /proc/self/gid_map; id -u; touch /tmp/owned", withUserNS(hostID))
	openPathToRoot(t, b)
	out := e.mustRun("ctr", b)
	want := fmt.Sprintf("0 %d 65536 0 %d 65536 0", hostID, hostID)
	if fields(out) != want {
		t.Errorf("inside: %q, want uid/gid maps and id %q", fields(out), want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(rootfsPath(b, "tmp/owned"), &st); err != nil {
		t.Fatalf("file created in the container: %v", err)
	}
	if st.Uid != hostID || st.Gid != hostID {
		t.Errorf("file created by container root is owned by %d:%d on the host, want %d:%d", st.Uid, st.Gid, hostID, hostID)
	}
}

// TestUserNamespaceIDMapMount: in a container with a user namespace, idmap binds are made by the
// parent and attached by the init. A host-root-owned directory is bound three ways: ID-mapped by the
// container's mappings (its root sees and writes it as its own), by a mapping of the mount's own
// (read-only), and plainly (the overflow ID: the control that the mappings did it).
func TestUserNamespaceIDMapMount(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/self/ns/user"); err != nil {
		t.Skipf("skipping: kernel without user namespaces: %v", err)
	}
	e := newEnv(t)
	const hostID = 100000
	src := t.TempDir()
	if err := os.Chmod(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "owned"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := `echo "idm: $(stat -c %u:%g /idm/owned)"
echo "cust: $(stat -c %u:%g /cust/owned)"
echo "plain: $(stat -c %u:%g /plain/owned)"
echo made > /idm/made && echo "idm: writable"
touch /cust/x 2>/dev/null && echo "cust: writable" || echo "cust: read-only"`
	userNS := withUserNS(hostID)
	// The mount's own mapping: the host's 0 shows as hostID+1000 outside, so 1000 inside.
	own := []specs.LinuxIDMapping{{ContainerID: 0, HostID: hostID + 1000, Size: 1}}
	b := e.bundle(script, userNS, func(s *specs.Spec) {
		s.Mounts = append(s.Mounts,
			specs.Mount{Destination: "/idm", Type: "bind", Source: src, Options: []string{"rbind", "rw", "idmap"}},
			specs.Mount{Destination: "/cust", Type: "bind", Source: src, Options: []string{"bind", "ro"}, UIDMappings: own, GIDMappings: own},
			specs.Mount{Destination: "/plain", Type: "bind", Source: src, Options: []string{"bind", "ro"}},
		)
	})
	openPathToRoot(t, b)
	// The rootfs is the host root's: its mapped root could not make the mount points.
	for _, d := range []string{"idm", "cust", "plain"} {
		if err := os.Mkdir(rootfsPath(b, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got := e.mustRun("idmap", b)
	want := "idm: 0:0\ncust: 1000:1000\nplain: 65534:65534\nidm: writable\ncust: read-only"
	if got != want {
		t.Errorf("inside:\n%s\nwant:\n%s", got, want)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(src, "made"), &st); err != nil {
		t.Fatalf("the container's write through the ID-mapped mount: %v", err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("/idm/made is owned by %d:%d on the host, want 0:0 (mapped back)", st.Uid, st.Gid)
	}
	if _, err := os.Stat(filepath.Join(src, "x")); err == nil {
		t.Errorf("the read-only ID-mapped mount was written through")
	}

	// A container joining another's user namespace, with an idmap bind naming no mappings, is mapped
	// by the namespace it joins.
	e.mustKnast("create", "--bundle", e.bundle("true", userNS), "holder")
	holder := e.state("holder")
	jb := e.bundle("stat -c %u:%g /joined/owned", userNS, func(s *specs.Spec) {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.UserNamespace {
				s.Linux.Namespaces[i].Path = fmt.Sprintf("/proc/%d/ns/user", holder.Pid)
			}
		}
		s.Linux.UIDMappings, s.Linux.GIDMappings = nil, nil
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/joined", Type: "bind", Source: src, Options: []string{"bind", "idmap"}})
	})
	openPathToRoot(t, jb)
	if err := os.Mkdir(rootfsPath(jb, "joined"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := e.mustRun("joiner", jb); got != "0:0" {
		t.Errorf("owner through an idmap bind mapped by a joined user namespace: %q, want 0:0", got)
	}
	e.mustKnast("delete", "--force", "holder")

	// Only bind mounts can be ID-mapped from outside the user namespace: refused before anything is made.
	badIdx := -1
	bad := e.bundle("true", userNS, func(s *specs.Spec) {
		badIdx = len(s.Mounts)
		s.Mounts = append(s.Mounts, specs.Mount{Destination: "/t", Type: "tmpfs", Source: "tmpfs", Options: []string{"idmap"}})
	})
	r := e.knast("create", "--bundle", bad, "idmap-tmpfs")
	if r.Code == 0 || !strings.Contains(r.Stderr, "must be a bind mount") || !strings.Contains(r.Stderr, fmt.Sprintf("mounts[%d]", badIdx)) {
		t.Errorf("an ID-mapped tmpfs in a user namespace: want a refusal naming the mount, got %s", r)
	}
	if l := e.mustKnast("list", "-q"); strings.TrimSpace(l.Stdout) != "" {
		t.Errorf("containers left after the refused create: %q", l.Stdout)
	}
}
