//go:build linux

package integration

import (
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// capMask is the /proc/<pid>/status hex mask of the named capabilities.
func capMask(names ...string) string {
	bits := map[string]uint{"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_NET_BIND_SERVICE": 10, "CAP_SYS_ADMIN": 21,
		"CAP_AUDIT_WRITE": 29}
	var m uint64
	for _, n := range names {
		m |= 1 << bits[n]
	}
	return fmt.Sprintf("%016x", m)
}

func TestProcess(t *testing.T) {
	t.Parallel()
	caps := []string{"CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"}
	for _, tc := range []struct {
		name   string
		script string
		edit   func(s *specs.Spec)
		want   string // whitespace-normalised stdout
	}{
		{
			name:   "sysctl-ipc",
			script: "cat /proc/sys/kernel/shmmax /proc/sys/kernel/msgmax",
			edit: func(s *specs.Spec) {
				s.Linux.Sysctl = map[string]string{"kernel.shmmax": "123456789", "kernel.msgmax": "4096"}
			},
			want: "123456789 4096",
		},
		{
			name:   "rlimits",
			script: `grep -E '^Max (open files|processes|core file size)' /proc/self/limits; ulimit -n`,
			edit: func(s *specs.Spec) {
				s.Process.Rlimits = []specs.POSIXRlimit{
					{Type: "RLIMIT_NOFILE", Soft: 1234, Hard: 2345},
					{Type: "RLIMIT_NPROC", Soft: 777, Hard: 888},
					{Type: "RLIMIT_CORE", Soft: 0, Hard: 0},
				}
			},
			want: "Max core file size 0 0 bytes Max processes 777 888 processes Max open files 1234 2345 files 1234",
		},
		{
			name:   "capabilities",
			script: `grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status`,
			edit: func(s *specs.Spec) {
				s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: caps, Effective: caps,
					Permitted: caps, Inheritable: caps, Ambient: caps}
			},
			want: fmt.Sprintf("CapInh: %[1]s CapPrm: %[1]s CapEff: %[1]s CapBnd: %[1]s CapAmb: %[1]s", capMask(caps...)),
		},
		{
			name:   "capabilities-default",
			script: `grep -E '^Cap(Eff|Bnd)' /proc/self/status`,
			edit: func(s *specs.Spec) {
				s.Process.Capabilities = &specs.LinuxCapabilities{
					Bounding:  []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
					Effective: []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
					Permitted: []string{"CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"},
				}
			},
			want: fmt.Sprintf("CapEff: %[1]s CapBnd: %[1]s", capMask("CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE")),
		},
		{
			name:   "no-new-privileges",
			script: `grep NoNewPrivs /proc/self/status`,
			edit:   func(s *specs.Spec) { s.Process.NoNewPrivileges = true },
			want:   "NoNewPrivs: 1",
		},
		{
			name:   "new-privileges-allowed",
			script: `grep NoNewPrivs /proc/self/status`,
			edit:   func(s *specs.Spec) { s.Process.NoNewPrivileges = false },
			want:   "NoNewPrivs: 0",
		},
		{
			name:   "user",
			script: `id -u; id -g; id -G | tr ' ' '\n' | sort -n | tr '\n' ' '; touch /tmp/mine && stat -c %u:%g /tmp/mine`,
			edit: func(s *specs.Spec) {
				s.Process.User = specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{10, 20}}
			},
			want: "1000 1000 10 20 1000 1000:1000",
		},
		{
			name:   "user-non-root-no-caps",
			script: `grep -E '^CapEff' /proc/self/status`,
			edit: func(s *specs.Spec) {
				s.Process.User = specs.User{UID: 1000, GID: 1000}
			},
			want: "CapEff: 0000000000000000",
		},
		{
			name:   "cwd",
			script: `pwd`,
			edit:   func(s *specs.Spec) { s.Process.Cwd = "/tmp" },
			want:   "/tmp",
		},
		{
			name:   "cwd-created",
			script: `pwd`,
			edit:   func(s *specs.Spec) { s.Process.Cwd = "/does/not/exist/yet" },
			want:   "/does/not/exist/yet",
		},
		{
			name:   "env",
			script: `echo "$FOO|$EMPTY|$PATH"; env | grep -c KNAST_ITEST_HOST_ONLY || true`,
			edit: func(s *specs.Spec) {
				s.Process.Env = append(s.Process.Env, "FOO=bar baz", "EMPTY=")
			},
			want: "bar baz||/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin 0",
		},
		{
			name:   "oom-score-adj",
			script: `cat /proc/self/oom_score_adj`,
			edit: func(s *specs.Spec) {
				v := 123
				s.Process.OOMScoreAdj = &v
			},
			want: "123",
		},
		{
			name:   "umask",
			script: `umask`,
			edit: func(s *specs.Spec) {
				m := uint32(0o027)
				s.Process.User.Umask = &m
			},
			want: "0027",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			b := e.bundle(tc.script, tc.edit)
			r := e.knast("run", "--bundle", b, "ctr")
			if r.Code != 0 {
				t.Errorf("%s", r)
			}
			if got := fields(r.Stdout); got != tc.want {
				t.Errorf("inside: %q\nwant:   %q", got, tc.want)
			}
		})
	}
}

// TestEnvNotInherited checks that knast's own environment does not reach the container: only the spec's
// variables, plus HOME, which runc derives from /etc/passwd when the spec lacks it.
func TestEnvNotInherited(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	b := e.bundle(`env | sort | grep -v -e '^KNAST_ITEST' -e '^PWD=' -e '^SHLVL=' -e '^HOME=' | cut -d= -f1 | tr '\n' ' '`, func(s *specs.Spec) {
		s.Process.Env = []string{"PATH=/bin", "ONLY=1", e.token, suiteToken}
	})
	if got := fields(e.mustRun("ctr", b)); got != "ONLY PATH" {
		t.Errorf("environment inside: %q, want only ONLY and PATH", got)
	}
}
