package cgroups

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ctrlCore stands for the cgroup2 core files (cgroup.*), present whatever the enabled controllers.
const ctrlCore = "cgroup"

// fileWrite is one decision: write value to file in the hierarchy holding ctrl. Entries with err or
// warn set are not writes: they report that the resource cannot be applied (err) or is ignored
// (warn) when ctrl lives on the hierarchy version the entry was planned for.
type fileWrite struct {
	ctrl      string
	file      string
	value     string
	field     string // the spec field, named in errors
	optional  bool   // a missing file is skipped (e.g. hugetlb rsvd limits on older kernels)
	retryLast bool   // on EINVAL, retry once after the other writes (period/quota/burst ordering)
	verify    bool   // read back: a different value means the kernel clamped it
	bpf       bool   // the device rules: an eBPF program attached to the cgroup, not a file
	cover     string // what the entry stands for when checking that each resource has a home; field when ""
	err       error
	warn      string
}

func (w fileWrite) coverKey() string {
	if w.cover != "" {
		return w.cover
	}
	return w.field
}

// v1State is what the v1 plan needs to know about the existing cgroup.
type v1State struct {
	memLimit uint64 // current memory.limit_in_bytes: decides the memory/memsw write order
	blkioBFQ bool   // BFQ files (blkio.bfq.weight) instead of CFQ's blkio.weight
}

// v2State is what the v2 plan needs to know about the existing cgroup.
type v2State struct {
	ioBFQ       bool   // io.bfq.weight exists
	cpuMaxQuota string // quota part of the current cpu.max, kept when only the period changes
}

const (
	fMemory = "linux.resources.memory"
	fCPU    = "linux.resources.cpu"
	fBlkio  = "linux.resources.blockIO"
)

// checkResources rejects values no hierarchy could take, independent of the host.
func checkResources(r *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	var errs []error
	if m := r.Memory; m != nil {
		if m.Swappiness != nil && *m.Swappiness > 100 {
			errs = append(errs, fmt.Errorf("%s.swappiness: %d is out of range 0-100", fMemory, *m.Swappiness))
		}
		if m.Limit != nil && *m.Limit < -1 {
			errs = append(errs, fmt.Errorf("%s.limit: %d is invalid (-1 means unlimited)", fMemory, *m.Limit))
		}
		if m.Swap != nil && *m.Swap < -1 {
			errs = append(errs, fmt.Errorf("%s.swap: %d is invalid (-1 means unlimited)", fMemory, *m.Swap))
		}
		if _, err := swapV2(val64(m.Swap), val64(m.Limit)); err != nil {
			errs = append(errs, fmt.Errorf("%s.swap: %w", fMemory, err))
		}
	}
	if c := r.CPU; c != nil && c.Idle != nil && *c.Idle != 0 && *c.Idle != 1 {
		errs = append(errs, fmt.Errorf("%s.idle: %d is invalid (0 or 1)", fCPU, *c.Idle))
	}
	for i, h := range r.HugepageLimits {
		if _, err := parsePageSize(h.Pagesize); err != nil {
			errs = append(errs, fmt.Errorf("linux.resources.hugepageLimits[%d].pageSize: %w", i, err))
		}
	}
	for k := range r.Unified {
		if err := checkUnifiedKey(k); err != nil {
			errs = append(errs, fmt.Errorf("linux.resources.unified[%q]: %w", k, err))
		}
	}
	for i, d := range r.Devices {
		if _, err := deviceRule(d); err != nil {
			errs = append(errs, fmt.Errorf("linux.resources.devices[%d]: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

func checkUnifiedKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty file name")
	case strings.Contains(k, "/"):
		return errors.New("must be a file name in the cgroup, without '/'")
	case strings.Contains(k, ".."), k == ".":
		return errors.New("must not contain '..'")
	case !strings.Contains(k, "."):
		return errors.New("must be <controller>.<file>")
	}
	return nil
}

// unifiedController is the controller owning a cgroup2 file: the part before the first dot.
func unifiedController(k string) string {
	c, _, _ := strings.Cut(k, ".")
	return c
}

func val64(p *int64) int64 {
	if p == nil {
		return 0
	}
	return *p
}

// sharesToWeight converts cgroup v1 cpu.shares [2, 262144] to cgroup v2 cpu.weight [1, 10000] as
// current runc does (opencontainers/cgroups): a quadratic in log2(shares) through (2, 1),
// (1024, 100) and (262144, 10000), so the default shares map to the default weight. 0 means unset.
func sharesToWeight(shares uint64) uint64 {
	switch {
	case shares == 0:
		return 0
	case shares <= 2:
		return 1
	case shares >= 262144:
		return 10000
	}
	l := math.Log2(float64(shares))
	exp := (l*l+125*l)/612.0 - 7.0/34.0
	return uint64(math.Ceil(math.Pow(10, exp)))
}

// blkioWeightToIOWeight converts blkio.weight [10, 1000] to io.weight [1, 10000] (runc's linear map).
func blkioWeightToIOWeight(w uint16) uint64 {
	if w == 0 {
		return 0
	}
	if w < 10 {
		return 1
	}
	v := 1 + (uint64(w)-10)*9999/990
	return min(v, 10000)
}

// swapV2 converts the OCI swap (memory+swap) to memory.swap.max (swap only), like runc:
// -1 is unlimited, 0 is unset; memory -1 with swap unset makes swap unlimited too.
func swapV2(swap, mem int64) (int64, error) {
	switch {
	case mem == -1 && swap == 0:
		return -1, nil
	case swap == -1, swap == 0:
		return swap, nil
	case mem == 0 || mem == -1:
		return 0, errors.New("cannot limit swap without a memory limit")
	case swap < mem:
		return 0, fmt.Errorf("memory+swap limit %d is below the memory limit %d", swap, mem)
	}
	return swap - mem, nil
}

// numToStrV2 renders a v2 limit: 0 unset (""), -1 "max".
func numToStrV2(v int64) string {
	switch v {
	case 0:
		return ""
	case -1:
		return "max"
	}
	return strconv.FormatInt(v, 10)
}

// pidsMax renders pids.limit: -1 and 0 (and anything below) mean no limit.
func pidsMax(limit int64) string {
	if limit <= 0 {
		return "max"
	}
	return strconv.FormatInt(limit, 10)
}

// parsePageSize checks a hugepage size name such as "2MB" and returns its size in bytes.
func parsePageSize(s string) (uint64, error) {
	units := []struct {
		suffix string
		mult   uint64
	}{{"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"TB", 1 << 40}}
	for _, u := range units {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			n, err := strconv.ParseUint(num, 10, 64)
			if err != nil || n == 0 || num[0] == '0' {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, fmt.Errorf("%q: want <number><KB|MB|GB|TB>, e.g. 2MB", s)
}

// pageSizeName names a hugepage size of kB kibibytes the way hugetlb files do (2048 → "2MB").
func pageSizeName(kB uint64) string {
	units := []string{"KB", "MB", "GB", "TB"}
	i := 0
	for kB >= 1024 && kB%1024 == 0 && i < len(units)-1 {
		kB /= 1024
		i++
	}
	return strconv.FormatUint(kB, 10) + units[i]
}

func rdmaLine(dev string, l specs.LinuxRdma) string {
	s := dev
	if l.HcaHandles != nil {
		s += " hca_handle=" + strconv.FormatUint(uint64(*l.HcaHandles), 10)
	}
	if l.HcaObjects != nil {
		s += " hca_object=" + strconv.FormatUint(uint64(*l.HcaObjects), 10)
	}
	return s
}

func devNum(d specs.LinuxBlockIODevice) string {
	return strconv.FormatInt(d.Major, 10) + ":" + strconv.FormatInt(d.Minor, 10)
}

func kernelMemoryWarnings(m *specs.LinuxMemory) []fileWrite {
	var w []fileWrite
	if m.Kernel != nil { //nolint:staticcheck // deprecated in the spec, still accepted
		w = append(w, fileWrite{ctrl: "memory", field: fMemory + ".kernel", warn: "kernel memory limits are ignored (obsolete since Linux 5.4)"})
	}
	if m.KernelTCP != nil {
		w = append(w, fileWrite{ctrl: "memory", field: fMemory + ".kernelTCP", warn: "kernel TCP memory limits are ignored"})
	}
	return w
}

// v1Files decides the cgroup v1 writes for r, in order.
func v1Files(r *specs.LinuxResources, st v1State) []fileWrite {
	if r == nil {
		return nil
	}
	var w []fileWrite
	add := func(f fileWrite) { w = append(w, f) }

	if len(r.Devices) > 0 {
		add(fileWrite{ctrl: "devices", file: "devices.deny", value: "a", field: "linux.resources.devices"})
		for i, d := range r.Devices {
			rule, _ := deviceRule(d)
			file := "devices.deny"
			if rule.allow {
				file = "devices.allow"
			}
			add(fileWrite{ctrl: "devices", file: file, value: rule.String(), field: fmt.Sprintf("linux.resources.devices[%d]", i), cover: "linux.resources.devices"})
		}
	}

	if m := r.Memory; m != nil {
		mem, swap := val64(m.Limit), val64(m.Swap)
		if mem == -1 && swap == 0 {
			swap = -1 // unlimited memory cannot stay below a finite memory+swap limit
		}
		memW := fileWrite{ctrl: "memory", file: "memory.limit_in_bytes", value: strconv.FormatInt(mem, 10), field: fMemory + ".limit"}
		// Without swap accounting there is no memsw file, and "unlimited" holds anyway.
		swapW := fileWrite{ctrl: "memory", file: "memory.memsw.limit_in_bytes", value: strconv.FormatInt(swap, 10), field: fMemory + ".swap", optional: swap == -1}
		switch {
		case mem != 0 && swap != 0:
			// The kernel wants memory <= memsw at every step: raise memsw first when it grows.
			if swap == -1 || st.memLimit < uint64(swap) {
				add(swapW)
				add(memW)
			} else {
				add(memW)
				add(swapW)
			}
		case mem != 0:
			add(memW)
		case swap != 0:
			add(swapW)
		}
		if m.Reservation != nil && *m.Reservation != 0 {
			add(fileWrite{ctrl: "memory", file: "memory.soft_limit_in_bytes", value: strconv.FormatInt(*m.Reservation, 10), field: fMemory + ".reservation"})
		}
		if m.DisableOOMKiller != nil {
			v := "0"
			if *m.DisableOOMKiller {
				v = "1"
			}
			add(fileWrite{ctrl: "memory", file: "memory.oom_control", value: v, field: fMemory + ".disableOOMKiller"})
		}
		if m.Swappiness != nil {
			add(fileWrite{ctrl: "memory", file: "memory.swappiness", value: strconv.FormatUint(*m.Swappiness, 10), field: fMemory + ".swappiness"})
		}
		w = append(w, kernelMemoryWarnings(m)...)
	}

	if c := r.CPU; c != nil {
		if c.Shares != nil && *c.Shares != 0 {
			add(fileWrite{ctrl: "cpu", file: "cpu.shares", value: strconv.FormatUint(*c.Shares, 10), field: fCPU + ".shares", verify: true})
		}
		quota := c.Quota != nil && *c.Quota != 0
		if c.Period != nil && *c.Period != 0 {
			add(fileWrite{ctrl: "cpu", file: "cpu.cfs_period_us", value: strconv.FormatUint(*c.Period, 10), field: fCPU + ".period", retryLast: quota})
		}
		if quota {
			add(fileWrite{ctrl: "cpu", file: "cpu.cfs_quota_us", value: strconv.FormatInt(*c.Quota, 10), field: fCPU + ".quota"})
		}
		if c.Burst != nil {
			add(fileWrite{ctrl: "cpu", file: "cpu.cfs_burst_us", value: strconv.FormatUint(*c.Burst, 10), field: fCPU + ".burst", retryLast: true})
		}
		if c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
			add(fileWrite{ctrl: "cpu", file: "cpu.rt_period_us", value: strconv.FormatUint(*c.RealtimePeriod, 10), field: fCPU + ".realtimePeriod"})
		}
		if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 {
			add(fileWrite{ctrl: "cpu", file: "cpu.rt_runtime_us", value: strconv.FormatInt(*c.RealtimeRuntime, 10), field: fCPU + ".realtimeRuntime"})
		}
		if c.Idle != nil {
			add(fileWrite{ctrl: "cpu", file: "cpu.idle", value: strconv.FormatInt(*c.Idle, 10), field: fCPU + ".idle"})
		}
		if c.Cpus != "" {
			add(fileWrite{ctrl: "cpuset", file: "cpuset.cpus", value: c.Cpus, field: fCPU + ".cpus"})
		}
		if c.Mems != "" {
			add(fileWrite{ctrl: "cpuset", file: "cpuset.mems", value: c.Mems, field: fCPU + ".mems"})
		}
	}

	if p := r.Pids; p != nil && p.Limit != nil {
		add(fileWrite{ctrl: "pids", file: "pids.max", value: pidsMax(*p.Limit), field: "linux.resources.pids.limit"})
	}

	if b := r.BlockIO; b != nil {
		weightFile, weightDevFile := "blkio.weight", "blkio.weight_device"
		if st.blkioBFQ {
			weightFile, weightDevFile = "blkio.bfq.weight", "blkio.bfq.weight_device"
		}
		if b.Weight != nil && *b.Weight != 0 {
			add(fileWrite{ctrl: "blkio", file: weightFile, value: strconv.FormatUint(uint64(*b.Weight), 10), field: fBlkio + ".weight"})
		}
		if b.LeafWeight != nil && *b.LeafWeight != 0 {
			add(fileWrite{ctrl: "blkio", file: "blkio.leaf_weight", value: strconv.FormatUint(uint64(*b.LeafWeight), 10), field: fBlkio + ".leafWeight"})
		}
		for i, d := range b.WeightDevice {
			f := fmt.Sprintf("%s.weightDevice[%d]", fBlkio, i)
			if d.Weight != nil {
				add(fileWrite{ctrl: "blkio", file: weightDevFile, value: devNum(d.LinuxBlockIODevice) + " " + strconv.FormatUint(uint64(*d.Weight), 10), field: f + ".weight"})
			}
			if d.LeafWeight != nil {
				add(fileWrite{ctrl: "blkio", file: "blkio.leaf_weight_device", value: devNum(d.LinuxBlockIODevice) + " " + strconv.FormatUint(uint64(*d.LeafWeight), 10), field: f + ".leafWeight"})
			}
		}
		throttle := []struct {
			name string
			file string
			devs []specs.LinuxThrottleDevice
		}{
			{"throttleReadBpsDevice", "blkio.throttle.read_bps_device", b.ThrottleReadBpsDevice},
			{"throttleWriteBpsDevice", "blkio.throttle.write_bps_device", b.ThrottleWriteBpsDevice},
			{"throttleReadIOPSDevice", "blkio.throttle.read_iops_device", b.ThrottleReadIOPSDevice},
			{"throttleWriteIOPSDevice", "blkio.throttle.write_iops_device", b.ThrottleWriteIOPSDevice},
		}
		for _, t := range throttle {
			for i, d := range t.devs {
				add(fileWrite{ctrl: "blkio", file: t.file, value: devNum(d.LinuxBlockIODevice) + " " + strconv.FormatUint(d.Rate, 10), field: fmt.Sprintf("%s.%s[%d]", fBlkio, t.name, i)})
			}
		}
	}

	for i, h := range r.HugepageLimits {
		f := fmt.Sprintf("linux.resources.hugepageLimits[%d]", i)
		v := strconv.FormatUint(h.Limit, 10)
		add(fileWrite{ctrl: "hugetlb", file: "hugetlb." + h.Pagesize + ".limit_in_bytes", value: v, field: f})
		add(fileWrite{ctrl: "hugetlb", file: "hugetlb." + h.Pagesize + ".rsvd.limit_in_bytes", value: v, field: f, optional: true})
	}

	if n := r.Network; n != nil {
		if n.ClassID != nil {
			add(fileWrite{ctrl: "net_cls", file: "net_cls.classid", value: strconv.FormatUint(uint64(*n.ClassID), 10), field: "linux.resources.network.classID"})
		}
		for i, p := range n.Priorities {
			add(fileWrite{ctrl: "net_prio", file: "net_prio.ifpriomap", value: p.Name + " " + strconv.FormatUint(uint64(p.Priority), 10), field: fmt.Sprintf("linux.resources.network.priorities[%d]", i)})
		}
	}

	for _, dev := range slices.Sorted(maps.Keys(r.Rdma)) {
		add(fileWrite{ctrl: "rdma", file: "rdma.max", value: rdmaLine(dev, r.Rdma[dev]), field: fmt.Sprintf("linux.resources.rdma[%q]", dev)})
	}
	return w
}

// v2Files decides the cgroup v2 writes for r, in order.
func v2Files(r *specs.LinuxResources, st v2State) []fileWrite {
	if r == nil {
		return nil
	}
	var w []fileWrite
	add := func(f fileWrite) { w = append(w, f) }

	if len(r.Devices) > 0 {
		add(fileWrite{ctrl: "devices", field: "linux.resources.devices", bpf: true})
	}

	if m := r.Memory; m != nil {
		mem := val64(m.Limit)
		swap, _ := swapV2(val64(m.Swap), mem)
		s := numToStrV2(swap)
		if s == "" && m.Swap != nil && *m.Swap > 0 {
			s = "0" // swap equal to memory: no swap at all
		}
		if s != "" {
			// Without swap accounting the file is absent; "no limit" and "no swap" then hold anyway.
			add(fileWrite{ctrl: "memory", file: "memory.swap.max", value: s, field: fMemory + ".swap", optional: s == "max" || s == "0"})
		}
		if s := numToStrV2(mem); s != "" {
			add(fileWrite{ctrl: "memory", file: "memory.max", value: s, field: fMemory + ".limit"})
		}
		if m.Reservation != nil {
			if s := numToStrV2(*m.Reservation); s != "" {
				add(fileWrite{ctrl: "memory", file: "memory.low", value: s, field: fMemory + ".reservation"})
			}
		}
		if m.Swappiness != nil {
			add(fileWrite{ctrl: "memory", field: fMemory + ".swappiness", warn: "ignored: cgroup v2 has no per-cgroup swappiness"})
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			add(fileWrite{ctrl: "memory", field: fMemory + ".disableOOMKiller", warn: "ignored: cgroup v2 cannot disable the OOM killer"})
		}
		w = append(w, kernelMemoryWarnings(m)...)
	}

	if c := r.CPU; c != nil {
		if c.Idle != nil {
			add(fileWrite{ctrl: "cpu", file: "cpu.idle", value: strconv.FormatInt(*c.Idle, 10), field: fCPU + ".idle"})
		}
		if c.Shares != nil && *c.Shares != 0 {
			add(fileWrite{ctrl: "cpu", file: "cpu.weight", value: strconv.FormatUint(sharesToWeight(*c.Shares), 10), field: fCPU + ".shares"})
		}
		quota := c.Quota != nil && *c.Quota != 0
		if c.Burst != nil {
			add(fileWrite{ctrl: "cpu", file: "cpu.max.burst", value: strconv.FormatUint(*c.Burst, 10), field: fCPU + ".burst", retryLast: true})
		}
		if quota || (c.Period != nil && *c.Period != 0) {
			q := st.cpuMaxQuota
			if q == "" {
				q = "max"
			}
			if quota {
				q = "max"
				if *c.Quota > 0 {
					q = strconv.FormatInt(*c.Quota, 10)
				}
			}
			if c.Period != nil && *c.Period != 0 {
				q += " " + strconv.FormatUint(*c.Period, 10)
			}
			field := fCPU + ".quota"
			if !quota {
				field = fCPU + ".period"
			}
			add(fileWrite{ctrl: "cpu", file: "cpu.max", value: q, field: field})
		}
		if (c.RealtimePeriod != nil && *c.RealtimePeriod != 0) || (c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0) {
			add(fileWrite{ctrl: "cpu", field: fCPU + ".realtimeRuntime", err: errors.New("realtime scheduling limits are not supported on cgroup v2")})
		}
		if c.Cpus != "" {
			add(fileWrite{ctrl: "cpuset", file: "cpuset.cpus", value: c.Cpus, field: fCPU + ".cpus"})
		}
		if c.Mems != "" {
			add(fileWrite{ctrl: "cpuset", file: "cpuset.mems", value: c.Mems, field: fCPU + ".mems"})
		}
	}

	if p := r.Pids; p != nil && p.Limit != nil {
		add(fileWrite{ctrl: "pids", file: "pids.max", value: pidsMax(*p.Limit), field: "linux.resources.pids.limit"})
	}

	if b := r.BlockIO; b != nil {
		if b.Weight != nil && *b.Weight != 0 {
			if st.ioBFQ {
				add(fileWrite{ctrl: "io", file: "io.bfq.weight", value: strconv.FormatUint(uint64(*b.Weight), 10), field: fBlkio + ".weight"})
			} else {
				add(fileWrite{ctrl: "io", file: "io.weight", value: strconv.FormatUint(blkioWeightToIOWeight(*b.Weight), 10), field: fBlkio + ".weight"})
			}
		}
		if b.LeafWeight != nil && *b.LeafWeight != 0 {
			add(fileWrite{ctrl: "io", field: fBlkio + ".leafWeight", err: errors.New("blkio.leaf_weight has no cgroup v2 equivalent")})
		}
		for i, d := range b.WeightDevice {
			f := fmt.Sprintf("%s.weightDevice[%d]", fBlkio, i)
			if d.Weight != nil {
				if st.ioBFQ {
					add(fileWrite{ctrl: "io", file: "io.bfq.weight", value: devNum(d.LinuxBlockIODevice) + " " + strconv.FormatUint(uint64(*d.Weight), 10), field: f + ".weight"})
				} else {
					add(fileWrite{ctrl: "io", file: "io.weight", value: devNum(d.LinuxBlockIODevice) + " " + strconv.FormatUint(blkioWeightToIOWeight(*d.Weight), 10), field: f + ".weight"})
				}
			}
			if d.LeafWeight != nil {
				add(fileWrite{ctrl: "io", field: f + ".leafWeight", err: errors.New("blkio.leaf_weight_device has no cgroup v2 equivalent")})
			}
		}
		throttle := []struct {
			name, key string
			devs      []specs.LinuxThrottleDevice
		}{
			{"throttleReadBpsDevice", "rbps", b.ThrottleReadBpsDevice},
			{"throttleWriteBpsDevice", "wbps", b.ThrottleWriteBpsDevice},
			{"throttleReadIOPSDevice", "riops", b.ThrottleReadIOPSDevice},
			{"throttleWriteIOPSDevice", "wiops", b.ThrottleWriteIOPSDevice},
		}
		for _, t := range throttle {
			for i, d := range t.devs {
				rate := "max"
				if d.Rate != 0 {
					rate = strconv.FormatUint(d.Rate, 10)
				}
				add(fileWrite{ctrl: "io", file: "io.max", value: devNum(d.LinuxBlockIODevice) + " " + t.key + "=" + rate, field: fmt.Sprintf("%s.%s[%d]", fBlkio, t.name, i)})
			}
		}
	}

	for i, h := range r.HugepageLimits {
		f := fmt.Sprintf("linux.resources.hugepageLimits[%d]", i)
		v := strconv.FormatUint(h.Limit, 10)
		add(fileWrite{ctrl: "hugetlb", file: "hugetlb." + h.Pagesize + ".max", value: v, field: f})
		add(fileWrite{ctrl: "hugetlb", file: "hugetlb." + h.Pagesize + ".rsvd.max", value: v, field: f, optional: true})
	}

	for _, dev := range slices.Sorted(maps.Keys(r.Rdma)) {
		add(fileWrite{ctrl: "rdma", file: "rdma.max", value: rdmaLine(dev, r.Rdma[dev]), field: fmt.Sprintf("linux.resources.rdma[%q]", dev)})
	}

	for _, k := range slices.Sorted(maps.Keys(r.Unified)) {
		add(fileWrite{ctrl: unifiedController(k), file: k, value: r.Unified[k], field: fmt.Sprintf("linux.resources.unified[%q]", k)})
	}
	return w
}

// plan keeps the v1 writes whose controller is mounted as v1 and the v2 writes whose controller
// is on cgroup2, and fails for every field that neither side can take, naming why.
func plan(l Layout, w1, w2 []fileWrite) (keep1, keep2 []fileWrite, err error) {
	covered := map[string]bool{}
	var errs []error
	for _, w := range w1 {
		if l.v1For(w.ctrl) != nil {
			if w.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", w.field, w.err))
			}
			keep1 = append(keep1, w)
			covered[w.coverKey()] = true
		}
	}
	for _, w := range w2 {
		if l.onV2(w.ctrl) {
			if w.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", w.field, w.err))
			}
			keep2 = append(keep2, w)
			covered[w.coverKey()] = true
		}
	}
	reported := map[string]bool{}
	all := slices.Concat(w1, w2)
	if l.Unified() {
		all = slices.Concat(w2, w1) // name the cgroup2 controller (io, not blkio)
	}
	for _, w := range all {
		k := w.coverKey()
		if covered[k] || reported[k] || w.warn != "" {
			continue
		}
		reported[k] = true
		errs = append(errs, fmt.Errorf("%s: %s", k, missingController(l, w.ctrl)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, nil, err
	}
	return keep1, keep2, nil
}

func missingController(l Layout, c string) string {
	if h := l.v1For(c); h != nil {
		return fmt.Sprintf("the %s controller is mounted as cgroup v1 at %s, not on the cgroup2 hierarchy", c, h.Mountpoint)
	}
	if l.V2 == nil {
		return fmt.Sprintf("the %s cgroup controller is not mounted", c)
	}
	return fmt.Sprintf("the %s cgroup controller is not available (not mounted as cgroup v1, not in %s/cgroup.controllers)", c, l.V2.Mountpoint)
}

// hintFor explains a missing cgroup file by what usually causes it.
func hintFor(file string) string {
	switch {
	case strings.HasPrefix(file, "memory.memsw."), file == "memory.swap.max":
		return "swap accounting disabled"
	case strings.HasPrefix(file, "blkio.leaf_weight"):
		return "removed with the CFQ scheduler in Linux 5.0"
	case file == "blkio.weight", file == "blkio.weight_device":
		return "needs the CFQ scheduler, removed in Linux 5.0"
	case strings.HasPrefix(file, "cpu.rt_"):
		return "kernel built without CONFIG_RT_GROUP_SCHED"
	case file == "cpu.cfs_burst_us", file == "cpu.max.burst":
		return "needs Linux 5.14"
	case file == "cpu.idle":
		return "needs Linux 5.15"
	case strings.HasPrefix(file, "hugetlb."):
		return "hugepage size not supported by this kernel"
	case strings.HasPrefix(file, "io.bfq."):
		return "the BFQ scheduler is not in use"
	}
	return ""
}
