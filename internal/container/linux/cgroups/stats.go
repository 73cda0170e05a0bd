package cgroups

import (
	"bufio"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Stats is what `events --stats` prints as its data: the same JSON as runc's types.Stats.
type Stats struct {
	CPU               CPU                 `json:"cpu"`
	CPUSet            CPUSet              `json:"cpuset"`
	Memory            Memory              `json:"memory"`
	Pids              Pids                `json:"pids"`
	Blkio             Blkio               `json:"blkio"`
	Hugetlb           map[string]Hugetlb  `json:"hugetlb"`
	IntelRdt          IntelRdt            `json:"intel_rdt"`
	NetworkInterfaces []*NetworkInterface `json:"network_interfaces"`
}

// PSIData is one line of a cgroup2 *.pressure file.
type PSIData struct {
	Avg10  float64 `json:"avg10"`
	Avg60  float64 `json:"avg60"`
	Avg300 float64 `json:"avg300"`
	Total  uint64  `json:"total"`
}

// PSIStats is a cgroup2 *.pressure file.
type PSIStats struct {
	Some PSIData `json:"some,omitzero"`
	Full PSIData `json:"full,omitzero"`
}

// Hugetlb is the usage of one hugepage size.
type Hugetlb struct {
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// BlkioEntry is one device/operation counter.
type BlkioEntry struct {
	Major uint64 `json:"major,omitempty"`
	Minor uint64 `json:"minor,omitempty"`
	Op    string `json:"op,omitempty"`
	Value uint64 `json:"value,omitempty"`
}

// Blkio holds the block I/O counters.
type Blkio struct {
	IoServiceBytesRecursive []BlkioEntry `json:"ioServiceBytesRecursive,omitempty"`
	IoServicedRecursive     []BlkioEntry `json:"ioServicedRecursive,omitempty"`
	IoQueuedRecursive       []BlkioEntry `json:"ioQueueRecursive,omitempty"`
	IoServiceTimeRecursive  []BlkioEntry `json:"ioServiceTimeRecursive,omitempty"`
	IoWaitTimeRecursive     []BlkioEntry `json:"ioWaitTimeRecursive,omitempty"`
	IoMergedRecursive       []BlkioEntry `json:"ioMergedRecursive,omitempty"`
	IoTimeRecursive         []BlkioEntry `json:"ioTimeRecursive,omitempty"`
	SectorsRecursive        []BlkioEntry `json:"sectorsRecursive,omitempty"`
	PSI                     *PSIStats    `json:"psi,omitempty"`
}

// Pids is the task count and limit (0: unlimited).
type Pids struct {
	Current uint64 `json:"current,omitempty"`
	Limit   uint64 `json:"limit,omitempty"`
}

// Throttling is the CFS bandwidth throttling counters; ThrottledTime in nanoseconds.
type Throttling struct {
	Periods          uint64 `json:"periods,omitempty"`
	ThrottledPeriods uint64 `json:"throttledPeriods,omitempty"`
	ThrottledTime    uint64 `json:"throttledTime,omitempty"`
}

// CPUUsage is in nanoseconds.
type CPUUsage struct {
	Total        uint64   `json:"total,omitempty"`
	Percpu       []uint64 `json:"percpu,omitempty"`
	PercpuKernel []uint64 `json:"percpu_kernel,omitempty"`
	PercpuUser   []uint64 `json:"percpu_user,omitempty"`
	Kernel       uint64   `json:"kernel"`
	User         uint64   `json:"user"`
}

// CPU is the cpu and cpuacct data.
type CPU struct {
	Usage      CPUUsage   `json:"usage,omitempty"`
	Throttling Throttling `json:"throttling,omitempty"`
	PSI        *PSIStats  `json:"psi,omitempty"`
}

// CPUSet is the cpuset data.
type CPUSet struct {
	CPUs                  []uint16 `json:"cpus,omitempty"`
	CPUExclusive          uint64   `json:"cpu_exclusive"`
	Mems                  []uint16 `json:"mems,omitempty"`
	MemHardwall           uint64   `json:"mem_hardwall"`
	MemExclusive          uint64   `json:"mem_exclusive"`
	MemoryMigrate         uint64   `json:"memory_migrate"`
	MemorySpreadPage      uint64   `json:"memory_spread_page"`
	MemorySpreadSlab      uint64   `json:"memory_spread_slab"`
	MemoryPressure        uint64   `json:"memory_pressure"`
	SchedLoadBalance      uint64   `json:"sched_load_balance"`
	SchedRelaxDomainLevel int64    `json:"sched_relax_domain_level"`
}

// MemoryEntry is one memory counter family; Swap is memory+swap as on cgroup v1.
type MemoryEntry struct {
	Limit   uint64 `json:"limit"`
	Usage   uint64 `json:"usage,omitempty"`
	Max     uint64 `json:"max,omitempty"`
	Failcnt uint64 `json:"failcnt"`
}

// Memory is the memory controller data; Raw is memory.stat.
type Memory struct {
	Cache     uint64            `json:"cache,omitempty"`
	Usage     MemoryEntry       `json:"usage,omitempty"`
	Swap      MemoryEntry       `json:"swap,omitempty"`
	Kernel    MemoryEntry       `json:"kernel,omitempty"`
	KernelTCP MemoryEntry       `json:"kernelTCP,omitempty"`
	Raw       map[string]uint64 `json:"raw,omitempty"`
	PSI       *PSIStats         `json:"psi,omitempty"`
}

// L3CacheInfo is Intel RDT data; knast does not manage RDT, so it stays empty.
type L3CacheInfo struct {
	CbmMask    string `json:"cbm_mask,omitempty"`
	MinCbmBits uint64 `json:"min_cbm_bits,omitempty"`
	NumClosids uint64 `json:"num_closids,omitempty"`
}

// MemBwInfo is Intel RDT data; knast does not manage RDT, so it stays empty.
type MemBwInfo struct {
	BandwidthGran uint64 `json:"bandwidth_gran,omitempty"`
	DelayLinear   uint64 `json:"delay_linear,omitempty"`
	MinBandwidth  uint64 `json:"min_bandwidth,omitempty"`
	NumClosids    uint64 `json:"num_closids,omitempty"`
}

// IntelRdt keeps runc's JSON shape ("intel_rdt": {}).
type IntelRdt struct {
	L3CacheInfo       *L3CacheInfo `json:"l3_cache_info,omitempty"`
	L3CacheSchemaRoot string       `json:"l3_cache_schema_root,omitempty"`
	L3CacheSchema     string       `json:"l3_cache_schema,omitempty"`
	MemBwInfo         *MemBwInfo   `json:"mem_bw_info,omitempty"`
	MemBwSchemaRoot   string       `json:"mem_bw_schema_root,omitempty"`
	MemBwSchema       string       `json:"mem_bw_schema,omitempty"`
}

// NetworkInterface has no JSON tags in runc either: its keys are the Go names.
type NetworkInterface struct {
	Name      string
	RxBytes   uint64
	RxPackets uint64
	RxErrors  uint64
	RxDropped uint64
	TxBytes   uint64
	TxPackets uint64
	TxErrors  uint64
	TxDropped uint64
}

// parseCgroupUint reads a single-value file as runc does: "max" is MaxUint64, a negative value
// (v1's -1) is 0.
func parseCgroupUint(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return math.MaxUint64, nil
	}
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		if i, ierr := strconv.ParseInt(s, 10, 64); ierr == nil && i < 0 {
			return 0, nil
		}
		return 0, fmt.Errorf("parse %q: %w", s, err)
	}
	return v, nil
}

// parseKeyValues reads "key value" lines (memory.stat, cpu.stat, cpuacct.stat, memory.events).
func parseKeyValues(s string) (map[string]uint64, error) {
	out := map[string]uint64{}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 {
			return nil, fmt.Errorf("line %q: want \"key value\"", sc.Text())
		}
		v, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		out[f[0]] = v
	}
	return out, nil
}

// parseUintList reads whitespace-separated numbers (cpuacct.usage_percpu).
func parseUintList(s string) ([]uint64, error) {
	var out []uint64
	for _, f := range strings.Fields(s) {
		v, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("parse %q: %w", f, err)
		}
		out = append(out, v)
	}
	return out, nil
}

// parseCPUAcctAll reads cpuacct.usage_all ("cpu user system" rows after a header) into per-cpu
// kernel and user times.
func parseCPUAcctAll(s string) (kernel, user []uint64, err error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	first := true
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if first {
			first = false
			if f[0] == "cpu" {
				continue
			}
		}
		if len(f) != 3 {
			return nil, nil, fmt.Errorf("line %q: want \"cpu user system\"", sc.Text())
		}
		u, err1 := strconv.ParseUint(f[1], 10, 64)
		k, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("line %q: bad number", sc.Text())
		}
		user = append(user, u)
		kernel = append(kernel, k)
	}
	return kernel, user, nil
}

// parseBlkioV1 reads a v1 blkio recursive file ("8:0 Read 4096" lines, "Total N" skipped).
func parseBlkioV1(s string) ([]BlkioEntry, error) {
	var out []BlkioEntry
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || (len(f) == 2 && f[0] == "Total") {
			continue
		}
		var e BlkioEntry
		var val string
		switch len(f) {
		case 3:
			e.Op, val = f[1], f[2]
		case 2: // files without an op column (blkio.time_recursive, blkio.sectors_recursive)
			val = f[1]
		default:
			return nil, fmt.Errorf("line %q: want \"major:minor [op] value\"", sc.Text())
		}
		maj, mnr, ok := strings.Cut(f[0], ":")
		if !ok {
			return nil, fmt.Errorf("line %q: bad device", sc.Text())
		}
		var err error
		if e.Major, err = strconv.ParseUint(maj, 10, 64); err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		if e.Minor, err = strconv.ParseUint(mnr, 10, 64); err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		if e.Value, err = strconv.ParseUint(val, 10, 64); err != nil {
			return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// parseIOStat reads cgroup2 io.stat ("8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0") into
// runc's byte and operation counters.
func parseIOStat(s string) (bytes, ios []BlkioEntry, err error) {
	ops := map[string]struct {
		op    string
		isIOs bool
	}{
		"rbytes": {"Read", false}, "wbytes": {"Write", false}, "dbytes": {"Discard", false},
		"rios": {"Read", true}, "wios": {"Write", true}, "dios": {"Discard", true},
	}
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		maj, mnr, ok := strings.Cut(f[0], ":")
		if !ok {
			return nil, nil, fmt.Errorf("line %q: bad device", sc.Text())
		}
		ma, err1 := strconv.ParseUint(maj, 10, 64)
		mi, err2 := strconv.ParseUint(mnr, 10, 64)
		if err1 != nil || err2 != nil {
			return nil, nil, fmt.Errorf("line %q: bad device", sc.Text())
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			o, known := ops[k]
			if !ok || !known {
				continue
			}
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return nil, nil, fmt.Errorf("line %q: %w", sc.Text(), err)
			}
			e := BlkioEntry{Major: ma, Minor: mi, Op: o.op, Value: n}
			if o.isIOs {
				ios = append(ios, e)
			} else {
				bytes = append(bytes, e)
			}
		}
	}
	return bytes, ios, nil
}

// parsePSI reads a cgroup2 *.pressure file.
func parsePSI(s string) (*PSIStats, error) {
	var p PSIStats
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		var d *PSIData
		switch f[0] {
		case "some":
			d = &p.Some
		case "full":
			d = &p.Full
		default:
			return nil, fmt.Errorf("line %q: want some or full", sc.Text())
		}
		for _, kv := range f[1:] {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("line %q: bad field %q", sc.Text(), kv)
			}
			var err error
			switch k {
			case "avg10":
				d.Avg10, err = strconv.ParseFloat(v, 64)
			case "avg60":
				d.Avg60, err = strconv.ParseFloat(v, 64)
			case "avg300":
				d.Avg300, err = strconv.ParseFloat(v, 64)
			case "total":
				d.Total, err = strconv.ParseUint(v, 10, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("line %q: %w", sc.Text(), err)
			}
		}
	}
	return &p, nil
}

// parseCPUList reads a cpuset list such as "0-3,8,10-11".
func parseCPUList(s string) ([]uint16, error) {
	var out []uint16
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("cpu list %q: %w", s, err)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil {
				return nil, fmt.Errorf("cpu list %q: %w", s, err)
			}
		}
		if b < a {
			return nil, fmt.Errorf("cpu list %q: reversed range", s)
		}
		for i := a; i <= b; i++ {
			out = append(out, uint16(i))
		}
	}
	return out, nil
}

// clockTicks is USER_HZ, the unit of cpuacct.stat; it is 100 on every Linux architecture.
const clockTicks = 100

func ticksToNs(t uint64) uint64 { return t * (1e9 / clockTicks) }
