//go:build linux

package linux

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// The tests here change process-wide and thread state, so each runs the function under test in a child:
// the test binary re-executed with procChildEnv set, which runs TestProcChildHelper only. The child locks
// its thread, applies the request, prints what it was asked to, then execs Exec (if any) from the same
// thread, exactly as the container's init does.

const procChildEnv = "KNAST_PROC_TEST_CHILD"

// procChildReq is what the parent asks the child to do, passed as JSON in procChildEnv.
type procChildReq struct {
	// DropCaps are removed from the child's own bounding, effective, permitted and inheritable sets
	// first, so a test does not depend on what the host grants.
	DropCaps []string
	// OvermountProcSys mounts an empty tmpfs over /proc/sys before Op and removes it after, standing in
	// for a container that has hidden or faked /proc (the child must be in a new mount namespace).
	OvermountProcSys bool
	// PreRlimits are applied before Op, to start from a known state.
	PreRlimits []specs.POSIXRlimit
	Op         string // finalize, rlimits, oom, personality, hostname, sysctl, keyring
	Process    *specs.Process
	Rlimits    []specs.POSIXRlimit
	OOM        *int
	Persona    *specs.LinuxPersonality
	Hostname   [2]string
	Sysctl     map[string]string
	Keyring    string
	// PrintStatus prints the thread's /proc status, each line prefixed "PRE ", before the exec.
	PrintStatus bool
	Exec        []string
}

func TestProcChildHelper(t *testing.T) {
	raw := os.Getenv(procChildEnv)
	if raw == "" {
		t.Skip("runs only as the child process of the other tests in this package")
	}
	runtime.LockOSThread()
	if err := procChildRun(raw); err != nil {
		fmt.Printf("ERR: %v\n", err)
		os.Exit(3)
	}
	os.Exit(0)
}

func procChildRun(raw string) error {
	var req procChildReq
	if err := json.Unmarshal([]byte(raw), &req); err != nil {
		return err
	}
	if len(req.DropCaps) > 0 {
		if err := procTestDropCaps(req.DropCaps); err != nil {
			return fmt.Errorf("test setup: %w", err)
		}
	}
	if err := SetRlimits(req.PreRlimits); err != nil {
		return fmt.Errorf("test setup: %w", err)
	}
	if req.OvermountProcSys {
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			return fmt.Errorf("test setup: %w", err)
		}
		if err := unix.Mount("fake", "/proc/sys", "tmpfs", 0, ""); err != nil {
			return fmt.Errorf("test setup: %w", err)
		}
	}
	var err error
	switch req.Op {
	case "finalize":
		err = FinalizeProcess(req.Process)
	case "rlimits":
		err = SetRlimits(req.Rlimits)
	case "oom":
		err = SetOOMScoreAdj(req.OOM)
	case "personality":
		err = SetPersonality(req.Persona)
	case "hostname":
		err = SetHostname(req.Hostname[0], req.Hostname[1])
	case "sysctl":
		err = WriteSysctl(req.Sysctl)
	case "keyring":
		if err = JoinSessionKeyring(req.Keyring); err == nil {
			var desc string
			desc, err = unix.KeyctlString(unix.KEYCTL_DESCRIBE, unix.KEY_SPEC_SESSION_KEYRING)
			fmt.Printf("KEYRING %s\n", desc)
		}
	default:
		err = fmt.Errorf("unknown op %q", req.Op)
	}
	if err != nil {
		return err
	}
	if req.OvermountProcSys {
		if err := unix.Unmount("/proc/sys", 0); err != nil {
			return fmt.Errorf("test cleanup: %w", err)
		}
	}
	if req.PrintStatus {
		b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/status", unix.Gettid()))
		if err != nil {
			return err
		}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fmt.Printf("PRE %s\n", l)
		}
	}
	if len(req.Exec) > 0 {
		return syscall.Exec(req.Exec[0], req.Exec, []string{"PATH=/usr/bin:/bin"})
	}
	return nil
}

// procTestDropCaps removes names from every set of the calling thread.
func procTestDropCaps(names []string) error {
	mask, err := capParse("test", names, 63)
	if err != nil {
		return err
	}
	for c := 0; c < 64; c++ {
		if mask&(1<<uint(c)) == 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(c), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop bounding %d: %w", c, err)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	for i := range data {
		m := uint32(mask >> (32 * i))
		data[i].Effective &^= m
		data[i].Permitted &^= m
		data[i].Inheritable &^= m
	}
	return unix.Capset(&hdr, &data[0])
}

// procTestResult is what a child printed.
type procTestResult struct {
	Err    string            // the child's error, "" on success
	Pre    map[string]string // /proc status fields printed before the exec
	Output []string          // every other line
}

// procRunChild runs req in a child (in new namespaces when cloneflags is set) and collects its output.
func procRunChild(t *testing.T, req procChildReq, cloneflags uintptr) procTestResult {
	t.Helper()
	return procRunChildAttr(t, req, &syscall.SysProcAttr{Cloneflags: cloneflags})
}

func procRunChildAttr(t *testing.T, req procChildReq, attr *syscall.SysProcAttr) procTestResult {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the child changes credentials, capabilities and namespaces")
	}
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestProcChildHelper$", "-test.count=1")
	cmd.Env = append(os.Environ(), procChildEnv+"="+string(raw))
	cmd.SysProcAttr = attr
	out, err := cmd.CombinedOutput()
	res := procTestResult{Pre: map[string]string{}}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		l := sc.Text()
		switch {
		case strings.HasPrefix(l, "ERR: "):
			res.Err = strings.TrimPrefix(l, "ERR: ")
		case strings.HasPrefix(l, "PRE "):
			k, v, _ := strings.Cut(strings.TrimPrefix(l, "PRE "), ":")
			res.Pre[k] = strings.TrimSpace(v)
		default:
			res.Output = append(res.Output, l)
		}
	}
	if err != nil && res.Err == "" {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return res
}

// procStatusFields parses "Key:\tvalue" lines.
func procStatusFields(lines []string) map[string]string {
	m := map[string]string{}
	for _, l := range lines {
		if k, v, ok := strings.Cut(l, ":"); ok {
			m[k] = strings.TrimSpace(v)
		}
	}
	return m
}

const procBusybox = "/usr/bin/busybox"

func procNeedBusybox(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(procBusybox); err != nil {
		t.Skipf("needs busybox-static at %s: %v", procBusybox, err)
	}
}

func TestFinalizeProcessUser(t *testing.T) {
	procNeedBusybox(t)
	umask := uint32(0o077)
	tests := []struct {
		name string
		p    specs.Process
		want map[string]string // expected both before and after the exec
	}{
		{
			name: "uid 1000 gid 1000 additional groups, no_new_privs, umask 0077",
			p: specs.Process{
				User:            specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}, Umask: &umask},
				NoNewPrivileges: true,
			},
			want: map[string]string{
				"Uid":        "1000\t1000\t1000\t1000",
				"Gid":        "1000\t1000\t1000\t1000",
				"Groups":     "10 20",
				"NoNewPrivs": "1",
				"Umask":      "0077",
			},
		},
		{
			name: "root keeps no inherited groups, default umask",
			p:    specs.Process{User: specs.User{UID: 0, GID: 0}},
			want: map[string]string{
				"Uid":        "0\t0\t0\t0",
				"Gid":        "0\t0\t0\t0",
				"Groups":     "",
				"NoNewPrivs": "0",
				"Umask":      "0022",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := procRunChild(t, procChildReq{
				Op: "finalize", Process: &tt.p, PrintStatus: true,
				Exec: []string{procBusybox, "cat", "/proc/self/status"},
			}, 0)
			if res.Err != "" {
				t.Fatalf("FinalizeProcess: %s", res.Err)
			}
			post := procStatusFields(res.Output)
			for k, want := range tt.want {
				if got := res.Pre[k]; got != want {
					t.Errorf("before exec %s = %q, want %q", k, got, want)
				}
				if got := post[k]; got != want {
					t.Errorf("after exec %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

func TestFinalizeProcessErrors(t *testing.T) {
	tests := []struct {
		name string
		p    *specs.Process
		want []string
	}{
		{"nil process", nil, []string{"process"}},
		{
			"unknown capability name",
			&specs.Process{Capabilities: &specs.LinuxCapabilities{Effective: []string{"CAP_BOGUS"}}},
			[]string{"effective", `"CAP_BOGUS"`},
		},
		{
			"lower-case name is unknown, as in runc",
			&specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: []string{"cap_chown"}}},
			[]string{"bounding", "cap_chown"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// These fail while parsing, before anything changes, so they can run in the test process.
			err := FinalizeProcess(tt.p)
			if err == nil {
				t.Fatal("FinalizeProcess succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSetRlimits(t *testing.T) {
	procNeedBusybox(t)
	tests := []struct {
		name       string
		pre        []specs.POSIXRlimit
		drop       []string
		rl         []specs.POSIXRlimit
		wantLimits map[string][2]string // /proc/self/limits row -> soft, hard
		wantErr    []string
	}{
		{
			name:       "nofile 1024/1024",
			rl:         []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}},
			wantLimits: map[string][2]string{"Max open files": {"1024", "1024"}},
		},
		{
			// Go raises the soft NOFILE limit at start and restores it at exec unless told otherwise.
			name: "nofile soft below hard survives exec, plus core and nproc",
			rl: []specs.POSIXRlimit{
				{Type: "RLIMIT_NOFILE", Soft: 512, Hard: 1024},
				{Type: "RLIMIT_CORE", Soft: 0, Hard: 4096},
				{Type: "RLIMIT_NPROC", Soft: 300, Hard: 400},
			},
			wantLimits: map[string][2]string{
				"Max open files":     {"512", "1024"},
				"Max core file size": {"0", "4096"},
				"Max processes":      {"300", "400"},
			},
		},
		{
			name:    "raising the hard limit without CAP_SYS_RESOURCE",
			pre:     []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 1024}},
			drop:    []string{"CAP_SYS_RESOURCE"},
			rl:      []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 1024, Hard: 2048}},
			wantErr: []string{"RLIMIT_NOFILE", "2048", "1024", "CAP_SYS_RESOURCE"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := procRunChild(t, procChildReq{
				Op: "rlimits", DropCaps: tt.drop, PreRlimits: tt.pre, Rlimits: tt.rl,
				Exec: []string{procBusybox, "cat", "/proc/self/limits"},
			}, 0)
			if tt.wantErr != nil {
				if res.Err == "" {
					t.Fatalf("SetRlimits succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(res.Err, w) {
						t.Errorf("error %q does not mention %q", res.Err, w)
					}
				}
				return
			}
			if res.Err != "" {
				t.Fatalf("SetRlimits: %s", res.Err)
			}
			for row, want := range tt.wantLimits {
				got, ok := procLimitsRow(res.Output, row)
				if !ok {
					t.Fatalf("no %q row in /proc/self/limits:\n%s", row, strings.Join(res.Output, "\n"))
				}
				if got != want {
					t.Errorf("%s = %v, want %v", row, got, want)
				}
			}
		})
	}
}

// procLimitsRow returns the soft and hard columns of a /proc/<pid>/limits row.
func procLimitsRow(lines []string, name string) ([2]string, bool) {
	for _, l := range lines {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			f := strings.Fields(rest)
			if len(f) >= 2 {
				return [2]string{f[0], f[1]}, true
			}
		}
	}
	return [2]string{}, false
}

func TestSetRlimitsInvalid(t *testing.T) {
	tests := []struct {
		name string
		rl   []specs.POSIXRlimit
		want []string
	}{
		{"unknown type", []specs.POSIXRlimit{{Type: "RLIMIT_BOGUS", Soft: 1, Hard: 1}}, []string{`"RLIMIT_BOGUS"`}},
		{"soft above hard", []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Soft: 2, Hard: 1}}, []string{"RLIMIT_NOFILE", "soft"}},
		{"duplicate", []specs.POSIXRlimit{
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
			{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
		}, []string{"RLIMIT_CORE", "more than once"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Every entry is checked before any is applied, so this cannot touch the test process.
			err := SetRlimits(tt.rl)
			if err == nil {
				t.Fatal("SetRlimits succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestSetOOMScoreAdj(t *testing.T) {
	procNeedBusybox(t)
	ptr := func(i int) *int { return &i }
	cur, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		score   *int
		drop    []string
		want    string
		wantErr []string
	}{
		{name: "500", score: ptr(500), want: "500"},
		{name: "1000", score: ptr(1000), want: "1000"},
		{name: "nil leaves it alone", score: nil, want: strings.TrimSpace(string(cur))},
		{name: "lowering without CAP_SYS_RESOURCE", score: ptr(-500), drop: []string{"CAP_SYS_RESOURCE"},
			wantErr: []string{"-500", "CAP_SYS_RESOURCE"}},
		{name: "out of range", score: ptr(1001), wantErr: []string{"1001", "outside"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := procRunChild(t, procChildReq{
				Op: "oom", OOM: tt.score, DropCaps: tt.drop,
				Exec: []string{procBusybox, "cat", "/proc/self/oom_score_adj"},
			}, 0)
			if tt.wantErr != nil {
				if res.Err == "" {
					t.Fatalf("SetOOMScoreAdj succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(res.Err, w) {
						t.Errorf("error %q does not mention %q", res.Err, w)
					}
				}
				return
			}
			if res.Err != "" {
				t.Fatalf("SetOOMScoreAdj: %s", res.Err)
			}
			if got := strings.Join(res.Output, "\n"); got != tt.want {
				t.Errorf("oom_score_adj = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestSetHostname(t *testing.T) {
	procNeedBusybox(t)
	host, err := os.ReadFile("/proc/sys/kernel/hostname")
	if err != nil {
		t.Fatal(err)
	}
	dom, err := os.ReadFile("/proc/sys/kernel/domainname")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, hostname, domainname string
		want                       []string
	}{
		{"both", "knast-test", "knast.example", []string{"knast-test", "knast.example"}},
		{"hostname only", "only-host", "", []string{"only-host", strings.TrimSpace(string(dom))}},
		{"neither", "", "", []string{strings.TrimSpace(string(host)), strings.TrimSpace(string(dom))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := procRunChild(t, procChildReq{
				Op: "hostname", Hostname: [2]string{tt.hostname, tt.domainname},
				Exec: []string{procBusybox, "cat", "/proc/sys/kernel/hostname", "/proc/sys/kernel/domainname"},
			}, unix.CLONE_NEWUTS)
			if res.Err != "" {
				t.Fatalf("SetHostname: %s", res.Err)
			}
			if strings.Join(res.Output, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q, want %q", res.Output, tt.want)
			}
		})
	}
}

func TestWriteSysctl(t *testing.T) {
	procNeedBusybox(t)
	// New net, uts and ipc namespaces: nothing written here reaches the host.
	const ns = unix.CLONE_NEWNET | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC
	tests := []struct {
		name      string
		overmount bool
		sysctl    map[string]string
		files     []string
		want      []string
		wantErr   []string
	}{
		{
			name: "dotted, slashed and sysctl(8) keys",
			sysctl: map[string]string{
				"net.ipv4.ip_forward":         "1",
				"kernel.domainname":           "sysctl.example",
				"kernel/hostname":             "slash-form",
				"kernel.msgmax":               "4096",
				"net.ipv4.conf.lo.forwarding": "1",
			},
			files: []string{
				"/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/domainname",
				"/proc/sys/kernel/hostname", "/proc/sys/kernel/msgmax", "/proc/sys/net/ipv4/conf/lo/forwarding",
			},
			want: []string{"1", "sysctl.example", "slash-form", "4096", "1"},
		},
		{
			// The write goes to a private procfs, not to whatever the container's /proc shows.
			name:      "over-mounted /proc/sys",
			overmount: true,
			sysctl:    map[string]string{"net.ipv4.ip_forward": "1", "kernel.domainname": "behind.overmount"},
			files:     []string{"/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/domainname"},
			want:      []string{"1", "behind.overmount"},
		},
		{
			name:    "missing key",
			sysctl:  map[string]string{"net.ipv4.no_such_knob": "1"},
			wantErr: []string{"net.ipv4.no_such_knob", "/proc/sys/net/ipv4/no_such_knob"},
		},
		{
			name:    "escape attempt",
			sysctl:  map[string]string{"kernel/../../self/oom_score_adj": "1000"},
			wantErr: []string{"kernel/../../self/oom_score_adj", `".."`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := procChildReq{Op: "sysctl", Sysctl: tt.sysctl, OvermountProcSys: tt.overmount}
			if tt.files != nil {
				req.Exec = append([]string{procBusybox, "cat"}, tt.files...)
			}
			res := procRunChild(t, req, ns|unix.CLONE_NEWNS)
			if tt.wantErr != nil {
				if res.Err == "" {
					t.Fatalf("WriteSysctl succeeded, want an error")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(res.Err, w) {
						t.Errorf("error %q does not mention %q", res.Err, w)
					}
				}
				return
			}
			if res.Err != "" {
				t.Fatalf("WriteSysctl: %s", res.Err)
			}
			if strings.Join(res.Output, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got %q, want %q", res.Output, tt.want)
			}
		})
	}
}

func TestJoinSessionKeyring(t *testing.T) {
	tests := []struct {
		name     string
		keyring  string
		userns   bool
		wantPerm uint32 // search bit runc adds: by user, or by "other" in a user namespace
	}{
		{"host user namespace", "_ses.knast-test-a", false, procKeyUsrSearch},
		{"new user namespace", "_ses.knast-test-b", true, procKeyOthSearch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			attr := &syscall.SysProcAttr{}
			if tt.userns {
				attr.Cloneflags = unix.CLONE_NEWUSER
				attr.UidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
				attr.GidMappings = []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1}}
			}
			res := procRunChildAttr(t, procChildReq{Op: "keyring", Keyring: tt.keyring}, attr)
			if res.Err != "" {
				t.Fatalf("JoinSessionKeyring: %s", res.Err)
			}
			if len(res.Output) == 0 || !strings.HasPrefix(res.Output[0], "KEYRING ") {
				t.Fatalf("no keyring description in %q", res.Output)
			}
			f := strings.Split(strings.TrimPrefix(res.Output[0], "KEYRING "), ";")
			if len(f) != 5 || f[0] != "keyring" || f[4] != tt.keyring {
				t.Fatalf("session keyring = %q, want a keyring named %q", res.Output[0], tt.keyring)
			}
			var perm uint32
			if _, err := fmt.Sscanf(f[3], "%x", &perm); err != nil {
				t.Fatal(err)
			}
			if perm&tt.wantPerm == 0 {
				t.Errorf("keyring permissions %#x lack %#x", perm, tt.wantPerm)
			}
		})
	}
}
