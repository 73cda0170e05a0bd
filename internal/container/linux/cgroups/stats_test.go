package cgroups

import (
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCgroupUint(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{{"42\n", 42, false}, {"max\n", math.MaxUint64, false}, {"-1", 0, false}, {"x", 0, true}} {
		got, err := parseCgroupUint(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseCgroupUint(%q) = %d, %v", tc.in, got, err)
		}
	}
}

func TestStatParsers(t *testing.T) {
	kv, err := parseKeyValues("usage_usec 100\nuser_usec 60\n\nsystem_usec 40\n")
	if err != nil || !cmp.Equal(kv, map[string]uint64{"usage_usec": 100, "user_usec": 60, "system_usec": 40}) {
		t.Errorf("parseKeyValues = %v, %v", kv, err)
	}
	if _, err := parseKeyValues("a b c\n"); err == nil {
		t.Error("parseKeyValues accepted three fields")
	}

	k, u, err := parseCPUAcctAll("cpu user system\n0 10 20\n1 30 40\n")
	if err != nil || !cmp.Equal(k, []uint64{20, 40}) || !cmp.Equal(u, []uint64{10, 30}) {
		t.Errorf("parseCPUAcctAll = %v %v %v", k, u, err)
	}

	bl, err := parseBlkioV1("8:0 Read 4096\n8:0 Write 8192\nTotal 12288\n")
	want := []BlkioEntry{{8, 0, "Read", 4096}, {8, 0, "Write", 8192}}
	if err != nil || !cmp.Equal(bl, want) {
		t.Errorf("parseBlkioV1 = %v, %v", bl, err)
	}
	if _, err := parseBlkioV1("8-0 Read 1\n"); err == nil {
		t.Error("parseBlkioV1 accepted a bad device")
	}

	by, ios, err := parseIOStat("253:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n")
	if err != nil || !cmp.Equal(by, []BlkioEntry{{253, 0, "Read", 10}, {253, 0, "Write", 20}, {253, 0, "Discard", 0}}) ||
		!cmp.Equal(ios, []BlkioEntry{{253, 0, "Read", 1}, {253, 0, "Write", 2}, {253, 0, "Discard", 0}}) {
		t.Errorf("parseIOStat = %v %v %v", by, ios, err)
	}

	p, err := parsePSI("some avg10=1.50 avg60=0.00 avg300=0.00 total=123\nfull avg10=0.00 avg60=0.25 avg300=0.00 total=7\n")
	if err != nil || p.Some.Avg10 != 1.5 || p.Some.Total != 123 || p.Full.Avg60 != 0.25 || p.Full.Total != 7 {
		t.Errorf("parsePSI = %+v, %v", p, err)
	}

	cpus, err := parseCPUList("0-2,5,7-8\n")
	if err != nil || !cmp.Equal(cpus, []uint16{0, 1, 2, 5, 7, 8}) {
		t.Errorf("parseCPUList = %v, %v", cpus, err)
	}
	if _, err := parseCPUList("3-1"); err == nil {
		t.Error("parseCPUList accepted a reversed range")
	}
	if got := ticksToNs(150); got != 1500000000 {
		t.Errorf("ticksToNs(150) = %d", got)
	}
}

// The JSON keys must be runc's (types/events.go), since `events --stats` clients parse them.
func TestStatsJSONKeys(t *testing.T) {
	s := Stats{
		CPU:     CPU{Usage: CPUUsage{Total: 1, Percpu: []uint64{1}, Kernel: 2, User: 3}, Throttling: Throttling{Periods: 1, ThrottledPeriods: 2, ThrottledTime: 3}},
		Memory:  Memory{Cache: 1, Usage: MemoryEntry{Limit: 1, Usage: 2, Max: 3}, Swap: MemoryEntry{Usage: 1}, KernelTCP: MemoryEntry{Usage: 1}, Raw: map[string]uint64{"rss": 1}},
		Pids:    Pids{Current: 1, Limit: 2},
		Blkio:   Blkio{IoServiceBytesRecursive: []BlkioEntry{{8, 0, "Read", 1}}, IoQueuedRecursive: []BlkioEntry{{8, 0, "Read", 1}}},
		Hugetlb: map[string]Hugetlb{"2MB": {Usage: 1, Max: 2, Failcnt: 3}},
	}
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{
		`"cpu":{"usage":{"total":1,"percpu":[1],"kernel":2,"user":3},"throttling":{"periods":1,"throttledPeriods":2,"throttledTime":3}}`,
		`"memory":{"cache":1,"usage":{"limit":1,"usage":2,"max":3,"failcnt":0}`,
		`"kernelTCP":{"limit":0,"usage":1,"failcnt":0}`,
		`"raw":{"rss":1}`,
		`"pids":{"current":1,"limit":2}`,
		`"ioServiceBytesRecursive":[{"major":8,"op":"Read","value":1}]`,
		`"ioQueueRecursive"`,
		`"hugetlb":{"2MB":{"usage":1,"max":2,"failcnt":3}}`,
		`"intel_rdt":{}`,
		`"network_interfaces":null`,
		`"cpuset":{"cpu_exclusive":0`,
	} {
		if !strings.Contains(string(b), key) {
			t.Errorf("JSON lacks %s:\n%s", key, b)
		}
	}
}
