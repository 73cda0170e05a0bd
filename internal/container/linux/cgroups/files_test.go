package cgroups

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestSharesToWeight(t *testing.T) {
	tests := []struct{ shares, want uint64 }{
		{0, 0}, {1, 1}, {2, 1}, {1024, 100}, {262144, 10000}, {300000, 10000}, {512, 59}, {2048, 174},
	}
	for _, tc := range tests {
		if got := sharesToWeight(tc.shares); got != tc.want {
			t.Errorf("sharesToWeight(%d) = %d, want %d", tc.shares, got, tc.want)
		}
	}
}

func TestBlkioWeightToIOWeight(t *testing.T) {
	tests := []struct {
		w    uint16
		want uint64
	}{{0, 0}, {5, 1}, {10, 1}, {500, 4950}, {1000, 10000}}
	for _, tc := range tests {
		if got := blkioWeightToIOWeight(tc.w); got != tc.want {
			t.Errorf("blkioWeightToIOWeight(%d) = %d, want %d", tc.w, got, tc.want)
		}
	}
}

func TestSwapV2(t *testing.T) {
	tests := []struct {
		swap, mem, want int64
		err             bool
	}{
		{0, 0, 0, false}, {0, -1, -1, false}, {-1, 100, -1, false}, {300, 100, 200, false},
		{100, 100, 0, false}, {50, 100, 0, true}, {100, 0, 0, true}, {100, -1, 0, true},
	}
	for _, tc := range tests {
		got, err := swapV2(tc.swap, tc.mem)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("swapV2(%d, %d) = %d, %v; want %d, err %v", tc.swap, tc.mem, got, err, tc.want, tc.err)
		}
	}
}

func TestPageSizes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		err  bool
	}{{"2MB", 2 << 20, false}, {"1GB", 1 << 30, false}, {"64KB", 64 << 10, false}, {"2M", 0, true}, {"MB", 0, true}, {"02MB", 0, true}, {"-2MB", 0, true}} {
		got, err := parsePageSize(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parsePageSize(%q) = %d, %v", tc.in, got, err)
		}
	}
	for _, tc := range []struct {
		kb   uint64
		want string
	}{{2048, "2MB"}, {1048576, "1GB"}, {64, "64KB"}, {1536, "1536KB"}} {
		if got := pageSizeName(tc.kb); got != tc.want {
			t.Errorf("pageSizeName(%d) = %q, want %q", tc.kb, got, tc.want)
		}
	}
}

type fw struct{ Ctrl, File, Value, Field string }

func simplify(ws []fileWrite) []fw {
	var out []fw
	for _, w := range ws {
		f := fw{w.ctrl, w.file, w.value, w.field}
		switch {
		case w.err != nil:
			f.Value = "ERR " + w.err.Error()
		case w.warn != "":
			f.Value = "WARN"
		case w.bpf:
			f.Value = "BPF"
		}
		out = append(out, f)
	}
	return out
}

func TestV1Files(t *testing.T) {
	tests := []struct {
		name string
		r    *specs.LinuxResources
		st   v1State
		want []fw
	}{
		{
			name: "memory grows: memsw first",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](200), Swap: ptr[int64](400), Reservation: ptr[int64](100), Swappiness: ptr[uint64](10), DisableOOMKiller: ptr(true)}},
			st:   v1State{memLimit: 100},
			want: []fw{
				{"memory", "memory.memsw.limit_in_bytes", "400", "linux.resources.memory.swap"},
				{"memory", "memory.limit_in_bytes", "200", "linux.resources.memory.limit"},
				{"memory", "memory.soft_limit_in_bytes", "100", "linux.resources.memory.reservation"},
				{"memory", "memory.oom_control", "1", "linux.resources.memory.disableOOMKiller"},
				{"memory", "memory.swappiness", "10", "linux.resources.memory.swappiness"},
			},
		},
		{
			name: "memory shrinks: memory first; kernel memory warned",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](200), Swap: ptr[int64](400), Kernel: ptr[int64](1)}},
			st:   v1State{memLimit: 1 << 40},
			want: []fw{
				{"memory", "memory.limit_in_bytes", "200", "linux.resources.memory.limit"},
				{"memory", "memory.memsw.limit_in_bytes", "400", "linux.resources.memory.swap"},
				{"memory", "", "WARN", "linux.resources.memory.kernel"},
			},
		},
		{
			name: "unlimited memory makes memsw unlimited",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)}},
			want: []fw{
				{"memory", "memory.memsw.limit_in_bytes", "-1", "linux.resources.memory.swap"},
				{"memory", "memory.limit_in_bytes", "-1", "linux.resources.memory.limit"},
			},
		},
		{
			name: "cpu",
			r: &specs.LinuxResources{CPU: &specs.LinuxCPU{
				Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Burst: ptr[uint64](1000),
				RealtimePeriod: ptr[uint64](1000000), RealtimeRuntime: ptr[int64](950000), Idle: ptr[int64](1), Cpus: "0-1", Mems: "0",
			}},
			want: []fw{
				{"cpu", "cpu.shares", "512", "linux.resources.cpu.shares"},
				{"cpu", "cpu.cfs_period_us", "100000", "linux.resources.cpu.period"},
				{"cpu", "cpu.cfs_quota_us", "50000", "linux.resources.cpu.quota"},
				{"cpu", "cpu.cfs_burst_us", "1000", "linux.resources.cpu.burst"},
				{"cpu", "cpu.rt_period_us", "1000000", "linux.resources.cpu.realtimePeriod"},
				{"cpu", "cpu.rt_runtime_us", "950000", "linux.resources.cpu.realtimeRuntime"},
				{"cpu", "cpu.idle", "1", "linux.resources.cpu.idle"},
				{"cpuset", "cpuset.cpus", "0-1", "linux.resources.cpu.cpus"},
				{"cpuset", "cpuset.mems", "0", "linux.resources.cpu.mems"},
			},
		},
		{
			name: "pids -1 and 0 are max",
			r:    &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](0)}},
			want: []fw{{"pids", "pids.max", "max", "linux.resources.pids.limit"}},
		},
		{
			name: "blkio with BFQ, leaf weight, throttling",
			r: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
				Weight: ptr[uint16](500), LeafWeight: ptr[uint16](300),
				WeightDevice:          []specs.LinuxWeightDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Weight: ptr[uint16](600)}},
				ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 8, Minor: 0}, Rate: 1048576}},
			}},
			st: v1State{blkioBFQ: true},
			want: []fw{
				{"blkio", "blkio.bfq.weight", "500", "linux.resources.blockIO.weight"},
				{"blkio", "blkio.leaf_weight", "300", "linux.resources.blockIO.leafWeight"},
				{"blkio", "blkio.bfq.weight_device", "8:0 600", "linux.resources.blockIO.weightDevice[0].weight"},
				{"blkio", "blkio.throttle.read_bps_device", "8:0 1048576", "linux.resources.blockIO.throttleReadBpsDevice[0]"},
			},
		},
		{
			name: "hugetlb, network, rdma",
			r: &specs.LinuxResources{
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4194304}},
				Network:        &specs.LinuxNetwork{ClassID: ptr[uint32](0x100001), Priorities: []specs.LinuxInterfacePriority{{Name: "eth0", Priority: 5}}},
				Rdma:           map[string]specs.LinuxRdma{"mlx5_1": {HcaHandles: ptr[uint32](3)}, "mlx4_0": {HcaHandles: ptr[uint32](1), HcaObjects: ptr[uint32](9)}},
			},
			want: []fw{
				{"hugetlb", "hugetlb.2MB.limit_in_bytes", "4194304", "linux.resources.hugepageLimits[0]"},
				{"hugetlb", "hugetlb.2MB.rsvd.limit_in_bytes", "4194304", "linux.resources.hugepageLimits[0]"},
				{"net_cls", "net_cls.classid", "1048577", "linux.resources.network.classID"},
				{"net_prio", "net_prio.ifpriomap", "eth0 5", "linux.resources.network.priorities[0]"},
				{"rdma", "rdma.max", "mlx4_0 hca_handle=1 hca_object=9", `linux.resources.rdma["mlx4_0"]`},
				{"rdma", "rdma.max", "mlx5_1 hca_handle=3", `linux.resources.rdma["mlx5_1"]`},
			},
		},
		{
			name: "devices: deny all, then the rules in order",
			r: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"},
				{Allow: true, Type: "c", Major: ptr[int64](1), Minor: ptr[int64](3), Access: "rw"},
				{Allow: false, Type: "b", Major: ptr[int64](8), Access: "m"},
			}},
			want: []fw{
				{"devices", "devices.deny", "a", "linux.resources.devices"},
				{"devices", "devices.deny", "a", "linux.resources.devices[0]"},
				{"devices", "devices.allow", "c 1:3 rw", "linux.resources.devices[1]"},
				{"devices", "devices.deny", "b 8:* m", "linux.resources.devices[2]"},
			},
		},
		{name: "unified has no v1 file", r: &specs.LinuxResources{Unified: map[string]string{"memory.high": "1"}}},
		{name: "nil", r: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, simplify(v1Files(tc.r, tc.st))); d != "" {
				t.Errorf("v1Files (-want +got):\n%s", d)
			}
		})
	}
}

func TestV2Files(t *testing.T) {
	tests := []struct {
		name string
		r    *specs.LinuxResources
		st   v2State
		want []fw
	}{
		{
			name: "memory: swap is memory.swap.max = swap - limit",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](200), Swap: ptr[int64](500), Reservation: ptr[int64](100), Swappiness: ptr[uint64](1)}},
			want: []fw{
				{"memory", "memory.swap.max", "300", "linux.resources.memory.swap"},
				{"memory", "memory.max", "200", "linux.resources.memory.limit"},
				{"memory", "memory.low", "100", "linux.resources.memory.reservation"},
				{"memory", "", "WARN", "linux.resources.memory.swappiness"},
			},
		},
		{
			name: "memory: swap equal to limit disables swap",
			r:    &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](200), Swap: ptr[int64](200)}},
			want: []fw{
				{"memory", "memory.swap.max", "0", "linux.resources.memory.swap"},
				{"memory", "memory.max", "200", "linux.resources.memory.limit"},
			},
		},
		{
			name: "cpu: weight, cpu.max, idle; realtime refused",
			r: &specs.LinuxResources{CPU: &specs.LinuxCPU{
				Shares: ptr[uint64](1024), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Idle: ptr[int64](0), RealtimeRuntime: ptr[int64](5),
			}},
			want: []fw{
				{"cpu", "cpu.idle", "0", "linux.resources.cpu.idle"},
				{"cpu", "cpu.weight", "100", "linux.resources.cpu.shares"},
				{"cpu", "cpu.max", "50000 100000", "linux.resources.cpu.quota"},
				{"cpu", "", "ERR realtime scheduling limits are not supported on cgroup v2", "linux.resources.cpu.realtimeRuntime"},
			},
		},
		{
			name: "cpu: period alone keeps the current quota",
			r:    &specs.LinuxResources{CPU: &specs.LinuxCPU{Period: ptr[uint64](20000)}},
			st:   v2State{cpuMaxQuota: "7000"},
			want: []fw{{"cpu", "cpu.max", "7000 20000", "linux.resources.cpu.period"}},
		},
		{
			name: "cpu: quota -1 is max",
			r:    &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1)}},
			want: []fw{{"cpu", "cpu.max", "max", "linux.resources.cpu.quota"}},
		},
		{
			name: "io without BFQ, leaf weight refused",
			r: &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{
				Weight: ptr[uint16](1000), LeafWeight: ptr[uint16](10),
				ThrottleWriteIOPSDevice: []specs.LinuxThrottleDevice{{LinuxBlockIODevice: specs.LinuxBlockIODevice{Major: 253, Minor: 1}, Rate: 100}},
			}},
			want: []fw{
				{"io", "io.weight", "10000", "linux.resources.blockIO.weight"},
				{"io", "", "ERR blkio.leaf_weight has no cgroup v2 equivalent", "linux.resources.blockIO.leafWeight"},
				{"io", "io.max", "253:1 wiops=100", "linux.resources.blockIO.throttleWriteIOPSDevice[0]"},
			},
		},
		{
			name: "io with BFQ keeps the blkio weight",
			r:    &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr[uint16](300)}},
			st:   v2State{ioBFQ: true},
			want: []fw{{"io", "io.bfq.weight", "300", "linux.resources.blockIO.weight"}},
		},
		{
			name: "hugetlb, unified, devices, network has no v2 file",
			r: &specs.LinuxResources{
				HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "1GB", Limit: 1 << 30}},
				Unified:        map[string]string{"memory.high": "1000", "cgroup.max.depth": "3"},
				Devices:        []specs.LinuxDeviceCgroup{{Allow: false}},
				Network:        &specs.LinuxNetwork{ClassID: ptr[uint32](1)},
				Pids:           &specs.LinuxPids{Limit: ptr[int64](-1)},
			},
			want: []fw{
				{"devices", "", "BPF", "linux.resources.devices"},
				{"pids", "pids.max", "max", "linux.resources.pids.limit"},
				{"hugetlb", "hugetlb.1GB.max", "1073741824", "linux.resources.hugepageLimits[0]"},
				{"hugetlb", "hugetlb.1GB.rsvd.max", "1073741824", "linux.resources.hugepageLimits[0]"},
				{"cgroup", "cgroup.max.depth", "3", `linux.resources.unified["cgroup.max.depth"]`},
				{"memory", "memory.high", "1000", `linux.resources.unified["memory.high"]`},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, simplify(v2Files(tc.r, tc.st))); d != "" {
				t.Errorf("v2Files (-want +got):\n%s", d)
			}
		})
	}
}

func TestCheckResources(t *testing.T) {
	tests := []struct {
		name string
		r    *specs.LinuxResources
		want string // "" for valid
	}{
		{"valid", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](10), Swap: ptr[int64](20)}}, ""},
		{"swap below memory", &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](20), Swap: ptr[int64](10)}}, "linux.resources.memory.swap: memory+swap limit 10 is below the memory limit 20"},
		{"swappiness", &specs.LinuxResources{Memory: &specs.LinuxMemory{Swappiness: ptr[uint64](101)}}, "linux.resources.memory.swappiness: 101 is out of range 0-100"},
		{"page size", &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2Mb"}}}, "linux.resources.hugepageLimits[0].pageSize"},
		{"unified slash", &specs.LinuxResources{Unified: map[string]string{"../memory.max": "1"}}, `linux.resources.unified["../memory.max"]: must be a file name`},
		{"unified dotdot", &specs.LinuxResources{Unified: map[string]string{"memory..max": "1"}}, "must not contain '..'"},
		{"device type", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Type: "p"}}}, `linux.resources.devices[0]: type "p"`},
		{"device access", &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Type: "c", Access: "rx"}}}, `access "rx"`},
		{"idle", &specs.LinuxResources{CPU: &specs.LinuxCPU{Idle: ptr[int64](2)}}, "linux.resources.cpu.idle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := checkResources(tc.r)
			if tc.want == "" {
				if err != nil {
					t.Errorf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestPlan(t *testing.T) {
	v1 := layoutOf(t, mountinfoV1, procCgroupV1)
	hybrid := layoutOf(t, mountinfoHybrid, procCgroupHybrid, "hugetlb")
	v2 := layoutOf(t, mountinfoV2, procCgroupV2, "cpu", "memory", "pids")
	tests := []struct {
		name     string
		l        Layout
		r        *specs.LinuxResources
		want1    []string // files written on v1
		want2    []string // files written on v2
		wantErrs []string
	}{
		{
			name:  "hybrid: memory on v1, hugetlb on v2",
			l:     hybrid,
			r:     &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](100)}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 2 << 20}}},
			want1: []string{"memory.limit_in_bytes"},
			want2: []string{"hugetlb.2MB.max", "hugetlb.2MB.rsvd.max"},
		},
		{
			name:     "hybrid: unified memory key refused, network missing",
			l:        hybrid,
			r:        &specs.LinuxResources{Unified: map[string]string{"memory.high": "5"}, Network: &specs.LinuxNetwork{ClassID: ptr[uint32](1)}},
			wantErrs: []string{`linux.resources.unified["memory.high"]: the memory controller is mounted as cgroup v1 at /sys/fs/cgroup/memory`, "linux.resources.network.classID: the net_cls cgroup controller is not available"},
		},
		{
			name:     "pure v1: unified has no cgroup2, hugetlb not mounted",
			l:        v1,
			r:        &specs.LinuxResources{Unified: map[string]string{"cgroup.max.depth": "5"}, HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB"}}},
			wantErrs: []string{`linux.resources.unified["cgroup.max.depth"]: the cgroup cgroup controller is not mounted`, "linux.resources.hugepageLimits[0]: the hugetlb cgroup controller is not mounted"},
		},
		{
			name:  "pure v1: net_cls and devices",
			l:     v1,
			r:     &specs.LinuxResources{Network: &specs.LinuxNetwork{ClassID: ptr[uint32](1)}, CPU: &specs.LinuxCPU{Shares: ptr[uint64](2)}},
			want1: []string{"cpu.shares", "net_cls.classid"},
		},
		{
			name:     "pure v1: devices controller missing",
			l:        v1,
			r:        &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false}}},
			wantErrs: []string{"linux.resources.devices: the devices cgroup controller is not mounted"},
		},
		{
			name:  "pure v2: devices by eBPF, memory, unified",
			l:     v2,
			r:     &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: false}}, Memory: &specs.LinuxMemory{Limit: ptr[int64](1)}, Unified: map[string]string{"memory.high": "5"}},
			want2: []string{"", "memory.max", "memory.high"},
		},
		{
			name:     "pure v2: leaf weight and io not enabled",
			l:        v2,
			r:        &specs.LinuxResources{BlockIO: &specs.LinuxBlockIO{Weight: ptr[uint16](100)}},
			wantErrs: []string{"linux.resources.blockIO.weight: the io cgroup controller is not available (not mounted as cgroup v1, not in /sys/fs/cgroup/cgroup.controllers)"},
		},
		{
			name:     "pure v2: realtime refused",
			l:        v2,
			r:        &specs.LinuxResources{CPU: &specs.LinuxCPU{RealtimeRuntime: ptr[int64](1)}},
			wantErrs: []string{"linux.resources.cpu.realtimeRuntime: realtime scheduling limits are not supported on cgroup v2"},
		},
	}
	files := func(ws []fileWrite) []string {
		var out []string
		for _, w := range ws {
			out = append(out, w.file)
		}
		return out
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			k1, k2, err := plan(tc.l, v1Files(tc.r, v1State{}), v2Files(tc.r, v2State{}))
			if len(tc.wantErrs) > 0 {
				if err == nil {
					t.Fatalf("no error; want %q", tc.wantErrs)
				}
				for _, w := range tc.wantErrs {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q lacks %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("plan: %v", err)
			}
			if d := cmp.Diff(tc.want1, files(k1)); d != "" {
				t.Errorf("v1 (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.want2, files(k2)); d != "" {
				t.Errorf("v2 (-want +got):\n%s", d)
			}
		})
	}
}
