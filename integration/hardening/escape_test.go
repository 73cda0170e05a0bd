//go:build linux

package hardening

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/knast/knast/internal/testutil"
)

// lines parses the container's "name=value" report lines.
func lines(out string) map[string]string {
	m := map[string]string{}
	for l := range strings.Lines(out) {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			m[k] = v
		}
	}
	return m
}

// TestEscapeProcSelfExe (CVE-2019-5736): while the host runs `knast exec` again and again, a process
// in the container watches /proc for processes whose exe is knast (the exec'd init before it execs)
// and opens each for writing. No write may succeed and the knast binary on the host must not change.
func TestEscapeProcSelfExe(t *testing.T) {
	e := newEnv(t)
	suite.hostile.Add(1)
	before := sha(t, suite.bin)
	const watcher = `while :; do for p in /proc/[0-9]*; do
  x=$(readlink $p/exe 2>/dev/null) || continue
  case "$x" in *knast*|*memfd*) echo "SAW $p $x" >> /tmp/log
    if echo pwned >> $p/exe 2>/dev/null; then echo "WROTE $p $x" >> /tmp/log; fi
    if (exec 3<>$p/exe) 2>/dev/null; then echo "OPENED $p $x" >> /tmp/log; fi;;
  esac; done; done`
	bundle := e.bundle(watcher)
	const id = "esc-exe"
	e.must("run", "-d", "--bundle", bundle, id)
	defer e.run("delete", "--force", id)
	deadline := time.Now().Add(20 * time.Second)
	execs := 0
	for ; execs < 200 && time.Now().Before(deadline); execs += 4 {
		var wg sync.WaitGroup
		for range 4 {
			wg.Go(func() { e.run("exec", id, "true") })
		}
		wg.Wait()
		if log, _ := os.ReadFile(filepath.Join(bundle, "rootfs/tmp/log")); bytes.Count(log, []byte("SAW")) >= 5 {
			break
		}
	}
	log, _ := os.ReadFile(filepath.Join(bundle, "rootfs/tmp/log"))
	t.Logf("%d execs; the container saw a knast exe %d times", execs, bytes.Count(log, []byte("SAW")))
	if bytes.Contains(log, []byte("WROTE")) || bytes.Contains(log, []byte("OPENED")) {
		t.Errorf("the container opened knast's executable for writing:\n%s", log)
	}
	if after := sha(t, suite.bin); after != before {
		t.Errorf("the knast binary on the host changed: %s -> %s", before, after)
	}
}

func sha(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return fmt.Sprintf("%x", s[:8])
}

// TestEscapeLeakedFdCwd (CVE-2024-21626): a process started with its cwd in /proc/self/fd/N, for
// every small N, by run and by exec, with a host directory fd handed to knast (not preserved),
// must be refused or stay inside the container: it tries to climb out of its cwd and write a marker,
// which must not appear on the host, and the canary directory must be untouched.
func TestEscapeLeakedFdCwd(t *testing.T) {
	e := newEnv(t)
	c := newCanary(t)
	marker := fmt.Sprintf("knast-escape-%d", os.Getpid())
	script := fmt.Sprintf(`cd ../../../../../../.. 2>/dev/null; touch %s pwned 2>/dev/null; ls / > /dev/null; true`, marker)
	hostMarker := filepath.Join("/", marker)
	defer os.Remove(hostMarker)
	fd, err := os.Open(c.dir)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	parent, err := os.Open(filepath.Dir(c.dir))
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	files := []*os.File{fd, parent}

	long := e.bundle("exec sleep 3600")
	const id = "esc-fd"
	e.must("run", "-d", "--bundle", long, id)
	defer e.run("delete", "--force", id)
	for n := 3; n <= 12; n++ {
		cwd := "/proc/self/fd/" + strconv.Itoa(n)
		suite.hostile.Add(2)
		bundle := e.bundle(script, func(s *specs.Spec) { s.Process.Cwd = cwd })
		r := e.runWith(files, "run", "--bundle", bundle, fmt.Sprintf("esc-fd-%d", n))
		e.run("delete", "--force", fmt.Sprintf("esc-fd-%d", n))
		t.Logf("run cwd %s: exit %d %s", cwd, r.code, strings.TrimSpace(r.stderr))
		r = e.runWith(files, "exec", "--cwd", cwd, id, "sh", "-c", script)
		t.Logf("exec cwd %s: exit %d %s", cwd, r.code, strings.TrimSpace(r.stderr))
		if _, err := os.Lstat(hostMarker); err == nil {
			t.Fatalf("cwd %s: the container wrote %s on the host", cwd, hostMarker)
		}
	}
	c.check(t)
}

// TestEscapeMaskedReadonly: the default config's masked and read-only paths hold against writes,
// unmounting and remounting from inside, and the host's kernel settings stay as they were.
func TestEscapeMaskedReadonly(t *testing.T) {
	e := newEnv(t)
	core, _ := os.ReadFile("/proc/sys/kernel/core_pattern")
	const script = `
try() { name=$1; shift; if "$@" 2>/dev/null; then echo "$name=escaped"; else echo "$name=refused"; fi; }
try core_pattern sh -c 'echo "|/tmp/pwn" > /proc/sys/kernel/core_pattern'
try drop_caches sh -c 'echo 3 > /proc/sys/vm/drop_caches'
try sysrq sh -c 'echo h > /proc/sysrq-trigger'
try sys_write sh -c 'echo 1 > /sys/kernel/profiling'
try remount_proc_sys mount -o remount,rw /proc/sys
try unmask_kcore umount /proc/kcore
try unmask_keys umount -l /proc/keys
try kcore_read sh -c 'test -n "$(head -c 1 /proc/kcore)"'
try firmware_list sh -c 'test -n "$(ls -A /sys/firmware)"'
try remount_sys mount -o remount,rw /sys
`
	bundle := e.bundle(script)
	out := e.must("run", "--bundle", bundle, "esc-masked")
	got := lines(out)
	if len(got) < 10 {
		t.Fatalf("the container reported %d of 10 checks:\n%s", len(got), out)
	}
	for k, v := range got {
		suite.hostile.Add(1)
		if v != "refused" {
			t.Errorf("%s: %s from inside the container", k, v)
		}
	}
	if now, _ := os.ReadFile("/proc/sys/kernel/core_pattern"); !bytes.Equal(now, core) {
		t.Errorf("the host's core_pattern changed: %q -> %q", core, now)
	}
}

// TestEscapeCapabilities: the process has exactly the configured capabilities (effective, permitted,
// bounding; no ambient), no_new_privs, and privileged operations outside the set fail.
func TestEscapeCapabilities(t *testing.T) {
	e := newEnv(t)
	const script = `grep -E '^(Cap(Eff|Prm|Bnd|Amb|Inh)|NoNewPrivs):' /proc/self/status | tr -d '\t' | sed 's/:/=/'
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name=escaped"; else echo "$name=refused"; fi; }
touch /tmp/f
try chown chown 1000 /tmp/f
try mknod mknod /tmp/n c 1 3
try hostname hostname pwned
try mount mount -t tmpfs t /mnt
try chroot chroot / true
try nice nice -n -10 true
try settime sh -c '! date -s 2001-01-01 2>&1 | grep -q "not permitted"' # busybox date exits 0 when it cannot set
try read_other_ns sh -c 'cat /proc/1/root/etc/hostname'
try raw_socket ping -c 1 -W 1 127.0.0.1
`
	bundle := e.bundle(script)
	s, err := testutil.ReadSpec(bundle)
	if err != nil {
		t.Fatal(err)
	}
	out := e.must("run", "--bundle", bundle, "esc-caps")
	got := lines(out)
	want := capMask(t, s.Process.Capabilities.Effective)
	for _, k := range []string{"CapEff", "CapPrm"} {
		if got[k] != want {
			t.Errorf("%s = %s, want %s (%v)", k, got[k], want, s.Process.Capabilities.Effective)
		}
	}
	if b := capMask(t, s.Process.Capabilities.Bounding); got["CapBnd"] != b {
		t.Errorf("CapBnd = %s, want %s", got["CapBnd"], b)
	}
	if got["CapAmb"] != capMask(t, s.Process.Capabilities.Ambient) {
		t.Errorf("CapAmb = %s, want %v", got["CapAmb"], s.Process.Capabilities.Ambient)
	}
	if got["NoNewPrivs"] != "1" {
		t.Errorf("NoNewPrivs = %q, want 1", got["NoNewPrivs"])
	}
	for _, k := range []string{"chown", "mknod", "hostname", "mount", "chroot", "nice", "settime", "read_other_ns", "raw_socket"} {
		suite.hostile.Add(1)
		if got[k] != "refused" {
			t.Errorf("%s: %q from a container without the capability", k, got[k])
		}
	}
}

// capMask is /proc/PID/status's hex spelling of a capability set.
func capMask(t *testing.T, names []string) string {
	t.Helper()
	var m uint64
	for _, n := range names {
		c, ok := capByName(strings.TrimPrefix(strings.ToLower(n), "cap_"))
		if !ok {
			t.Fatalf("unknown capability %s", n)
		}
		m |= 1 << uint(c)
	}
	return fmt.Sprintf("%016x", m)
}

func capByName(n string) (capability.Cap, bool) {
	for _, c := range capability.ListKnown() {
		if c.String() == n {
			return c, true
		}
	}
	return 0, false
}

// TestEscapeCgroup: the container tries to move itself into every cgroup.procs it can see and to
// mount a cgroup hierarchy; afterwards, seen from the host, its init is still in its own cgroup on
// every hierarchy.
func TestEscapeCgroup(t *testing.T) {
	e := newEnv(t)
	const script = `for f in $(find /sys/fs/cgroup -name cgroup.procs 2>/dev/null) /sys/fs/cgroup/cgroup.procs; do
  if echo $$ > $f 2>/dev/null; then echo "wrote=$f"; fi; done
if mount -t cgroup2 none /mnt 2>/dev/null; then echo "mounted=cgroup2"; echo $$ > /mnt/cgroup.procs 2>/dev/null && echo "wrote=/mnt"; fi
if mount -t cgroup -o memory none /mnt 2>/dev/null; then echo "mounted=memory"; fi
echo done=1 ; exec sleep 3600`
	bundle := e.bundle(script)
	const id = "esc-cgroup"
	out := e.outputFile()
	cmd := e.command(e.ctx, "run", "-d", "--bundle", bundle, id)
	cmd.Stdout = out
	if err := cmd.Run(); err != nil {
		t.Fatalf("run -d: %v", err)
	}
	defer e.run("delete", "--force", id)
	var st struct{ Pid int }
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(readFile(out.Name()), "done=1") {
		if time.Now().After(deadline) {
			t.Fatalf("the container did not finish its attempts: %q", readFile(out.Name()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := json.Unmarshal([]byte(e.must("state", id)), &st); err != nil {
		t.Fatal(err)
	}
	report := readFile(out.Name())
	suite.hostile.Add(3)
	for l := range strings.Lines(report) {
		if strings.HasPrefix(l, "wrote=") || strings.HasPrefix(l, "mounted=") {
			t.Logf("inside: %s", strings.TrimSpace(l)) // judged below, by where the process is
		}
	}
	cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", st.Pid))
	if err != nil {
		t.Fatal(err)
	}
	want := testutil.KnastCgroupParent(e.root) + "/" + id
	for l := range strings.Lines(strings.TrimSpace(string(cg))) {
		parts := strings.SplitN(strings.TrimSpace(l), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if !strings.HasSuffix(parts[2], want) {
			t.Errorf("the container's init is in %s on hierarchy %q, want %s", parts[2], parts[1], want)
		}
	}
	if strings.Contains(report, "mounted=") {
		t.Errorf("the container mounted a cgroup hierarchy:\n%s", report)
	}
}

func (e *env) outputFile() *os.File {
	e.t.Helper()
	f, err := os.CreateTemp(e.dir, "ctr-out-*")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { f.Close() })
	return f
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}
