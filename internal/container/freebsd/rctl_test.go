package freebsd

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func i64(v int64) *int64   { return &v }
func u64(v uint64) *uint64 { return &v }
func strs(rules []Rule) []string {
	out := make([]string, len(rules))
	for i, r := range rules {
		out[i] = r.String()
	}
	return out
}

func TestRules(t *testing.T) {
	for _, tc := range []struct {
		name        string
		r           *specs.LinuxResources
		annotations map[string]string
		want        []string
		wantIgnored int
		wantErr     string
	}{
		{name: "nothing", r: nil, want: []string{}},
		{
			name: "memory, swap beyond it, pids, cpu quota",
			r: &specs.LinuxResources{
				Memory: &specs.LinuxMemory{Limit: i64(256 << 20), Swap: i64(384 << 20)},
				Pids:   &specs.LinuxPids{Limit: i64(100)},
				CPU:    &specs.LinuxCPU{Quota: i64(150000), Period: u64(100000)},
			},
			want: []string{
				"jail:c1:memoryuse:deny=268435456",
				"jail:c1:swapuse:deny=134217728",
				"jail:c1:pcpu:deny=150",
				"jail:c1:maxproc:deny=100",
			},
		},
		{
			name: "swap equal to memory means no swap",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(1 << 20), Swap: i64(1 << 20)}},
			want: []string{"jail:c1:memoryuse:deny=1048576", "jail:c1:swapuse:deny=0"},
		},
		{
			name: "unlimited values make no rules",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: i64(-1), Swap: i64(-1)}, Pids: &specs.LinuxPids{Limit: i64(-1)}},
			want: []string{},
		},
		{
			name: "a small quota rounds up to 1%",
			r:    &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: i64(10), Period: u64(100000)}},
			want: []string{"jail:c1:pcpu:deny=1"},
		},
		{
			name:        "fields without a counterpart are reported",
			r:           &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: u64(512)}, BlockIO: &specs.LinuxBlockIO{}},
			want:        []string{},
			wantIgnored: 2,
		},
		{
			name:        "annotation rules, overriding a mapped one",
			r:           &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: i64(100)}},
			annotations: map[string]string{AnnotationRctl: "openfiles:deny=1024, maxproc:deny=50 ,readbps:throttle=10m,memoryuse:sigterm=1g/process"},
			want: []string{
				"jail:c1:openfiles:deny=1024",
				"jail:c1:maxproc:deny=50",
				"jail:c1:readbps:throttle=10485760",
				"jail:c1:memoryuse:sigterm=1073741824/process",
			},
		},
		{name: "unknown resource", annotations: map[string]string{AnnotationRctl: "bananas:deny=1"}, wantErr: "unknown resource"},
		{name: "unknown action", annotations: map[string]string{AnnotationRctl: "maxproc:explode=1"}, wantErr: "unknown action"},
		{name: "bad amount", annotations: map[string]string{AnnotationRctl: "maxproc:deny=many"}, wantErr: "not a number"},
		{name: "overflow", annotations: map[string]string{AnnotationRctl: "memoryuse:deny=99999999999e"}, wantErr: "overflows"},
		{name: "bad per", annotations: map[string]string{AnnotationRctl: "maxproc:deny=1/galaxy"}, wantErr: "unknown per"},
		{name: "no action", annotations: map[string]string{AnnotationRctl: "maxproc=1"}, wantErr: "want resource:action=amount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rules, ignored, err := Rules("c1", tc.r, tc.annotations)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), AnnotationRctl) {
					t.Fatalf("err = %v, want one containing %q and the annotation", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strs(rules); !slices.Equal(got, tc.want) {
				t.Errorf("rules:\n got %q\nwant %q", got, tc.want)
			}
			if len(ignored) != tc.wantIgnored {
				t.Errorf("ignored = %q, want %d entries", ignored, tc.wantIgnored)
			}
		})
	}
}

func TestRctlFilter(t *testing.T) {
	if got := RctlFilter("pod.web"); got != "jail:pod.web" {
		t.Errorf("RctlFilter = %q", got)
	}
}

func TestParseRacctAndStats(t *testing.T) {
	usage, err := ParseRacct("cputime=3,datasize=1024,memoryuse=8388608,maxproc=2,swapuse=0,pcpu=1\x00")
	if err != nil {
		t.Fatal(err)
	}
	if usage["cputime"] != 3 || usage["memoryuse"] != 8388608 || usage["maxproc"] != 2 || len(usage) != 6 {
		t.Errorf("usage = %v", usage)
	}
	rules := []Rule{{Jail: "c1", Resource: "memoryuse", Action: "deny", Amount: 1 << 30}, {Jail: "c1", Resource: "maxproc", Action: "deny", Amount: 10}}
	b, err := json.Marshal(StatsFrom(usage, rules))
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CPU struct {
			Usage struct{ Total uint64 } `json:"usage"`
		} `json:"cpu"`
		Memory struct {
			Usage struct{ Usage, Limit uint64 } `json:"usage"`
		} `json:"memory"`
		Pids struct{ Current, Limit uint64 } `json:"pids"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.CPU.Usage.Total != 3e9 || got.Memory.Usage.Usage != 8388608 || got.Memory.Usage.Limit != 1<<30 || got.Pids.Current != 2 || got.Pids.Limit != 10 {
		t.Errorf("stats JSON %s", b)
	}
	for _, bad := range []string{"cputime", "cputime=x", "a=1,b"} {
		if _, err := ParseRacct(bad); err == nil {
			t.Errorf("ParseRacct(%q) accepted", bad)
		}
	}
}
