package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// statReader reads cgroup files for Stats, remembering the first error other than a missing file
// (optional counters differ between kernels).
type statReader struct{ err error }

func (s *statReader) read(dir, file string) (string, bool) {
	if dir == "" {
		return "", false
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) && s.err == nil {
			s.err = fmt.Errorf("stats: %w", err)
		}
		return "", false
	}
	return string(b), true
}

func (s *statReader) uint(dir, file string) uint64 {
	v, ok := s.read(dir, file)
	if !ok {
		return 0
	}
	n, err := parseCgroupUint(v)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("stats: %s: %w", filepath.Join(dir, file), err)
	}
	return n
}

func (s *statReader) kv(dir, file string) map[string]uint64 {
	v, ok := s.read(dir, file)
	if !ok {
		return nil
	}
	m, err := parseKeyValues(v)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("stats: %s: %w", filepath.Join(dir, file), err)
	}
	return m
}

func (s *statReader) psi(dir, file string) *PSIStats {
	v, ok := s.read(dir, file)
	if !ok {
		return nil
	}
	p, err := parsePSI(v)
	if err != nil && s.err == nil {
		s.err = fmt.Errorf("stats: %s: %w", filepath.Join(dir, file), err)
	}
	return p
}

// ctrlDir is the directory holding controller ctrl's files and whether it is a cgroup2 one.
func (c *Cgroup) ctrlDir(ctrl string) (string, bool) {
	if d := c.v1DirFor(ctrl); d != "" {
		return d, false
	}
	if c.v2 != "" && c.layout.onV2(ctrl) {
		return c.v2, true
	}
	return "", false
}

// Stats collects the counters runc's `events --stats` reports, from whichever hierarchy holds
// each controller. Controllers the host lacks leave their part zero.
func (c *Cgroup) Stats() (*Stats, error) {
	st := &Stats{Hugetlb: map[string]Hugetlb{}}
	var r statReader

	// cpu
	if d := c.v1DirFor("cpuacct"); d != "" {
		st.CPU.Usage.Total = r.uint(d, "cpuacct.usage")
		if v, ok := r.read(d, "cpuacct.usage_percpu"); ok {
			st.CPU.Usage.Percpu, _ = parseUintList(v)
		}
		if v, ok := r.read(d, "cpuacct.usage_all"); ok {
			st.CPU.Usage.PercpuKernel, st.CPU.Usage.PercpuUser, _ = parseCPUAcctAll(v)
		}
		if m := r.kv(d, "cpuacct.stat"); m != nil {
			st.CPU.Usage.User = ticksToNs(m["user"])
			st.CPU.Usage.Kernel = ticksToNs(m["system"])
		}
	} else if c.v2 != "" {
		if m := r.kv(c.v2, "cpu.stat"); m != nil {
			st.CPU.Usage.Total = m["usage_usec"] * 1000
			st.CPU.Usage.User = m["user_usec"] * 1000
			st.CPU.Usage.Kernel = m["system_usec"] * 1000
		}
	}
	if d, v2 := c.ctrlDir("cpu"); d != "" {
		if m := r.kv(d, "cpu.stat"); m != nil {
			st.CPU.Throttling.Periods = m["nr_periods"]
			st.CPU.Throttling.ThrottledPeriods = m["nr_throttled"]
			if v2 {
				st.CPU.Throttling.ThrottledTime = m["throttled_usec"] * 1000
			} else {
				st.CPU.Throttling.ThrottledTime = m["throttled_time"]
			}
		}
	}

	// cpuset
	if d, v2 := c.ctrlDir("cpuset"); d != "" {
		cpus, mems := "cpuset.cpus", "cpuset.mems"
		if v2 {
			cpus, mems = "cpuset.cpus.effective", "cpuset.mems.effective"
		}
		if v, ok := r.read(d, cpus); ok {
			st.CPUSet.CPUs, _ = parseCPUList(v)
		}
		if v, ok := r.read(d, mems); ok {
			st.CPUSet.Mems, _ = parseCPUList(v)
		}
		if !v2 {
			st.CPUSet.CPUExclusive = r.uint(d, "cpuset.cpu_exclusive")
			st.CPUSet.MemHardwall = r.uint(d, "cpuset.mem_hardwall")
			st.CPUSet.MemExclusive = r.uint(d, "cpuset.mem_exclusive")
			st.CPUSet.MemoryMigrate = r.uint(d, "cpuset.memory_migrate")
			st.CPUSet.MemorySpreadPage = r.uint(d, "cpuset.memory_spread_page")
			st.CPUSet.MemorySpreadSlab = r.uint(d, "cpuset.memory_spread_slab")
			st.CPUSet.MemoryPressure = r.uint(d, "cpuset.memory_pressure")
			st.CPUSet.SchedLoadBalance = r.uint(d, "cpuset.sched_load_balance")
			if v, ok := r.read(d, "cpuset.sched_relax_domain_level"); ok {
				st.CPUSet.SchedRelaxDomainLevel, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
	}

	// memory
	if d, v2 := c.ctrlDir("memory"); d != "" {
		st.Memory.Raw = r.kv(d, "memory.stat")
		if v2 {
			st.Memory.Cache = st.Memory.Raw["file"]
			st.Memory.Usage = MemoryEntry{Usage: r.uint(d, "memory.current"), Limit: r.uint(d, "memory.max"), Max: r.uint(d, "memory.peak")}
			if ev := r.kv(d, "memory.events"); ev != nil {
				st.Memory.Usage.Failcnt = ev["max"]
			}
			// runc reports memory+swap, as v1 does.
			if _, ok := r.read(d, "memory.swap.current"); ok {
				st.Memory.Swap = MemoryEntry{Usage: r.uint(d, "memory.swap.current") + st.Memory.Usage.Usage, Limit: r.uint(d, "memory.swap.max")}
				if st.Memory.Swap.Limit != math.MaxUint64 {
					st.Memory.Swap.Limit += st.Memory.Usage.Limit
				}
			}
		} else {
			st.Memory.Cache = st.Memory.Raw["cache"]
			entry := func(prefix string) MemoryEntry {
				return MemoryEntry{
					Usage:   r.uint(d, prefix+"usage_in_bytes"),
					Max:     r.uint(d, prefix+"max_usage_in_bytes"),
					Failcnt: r.uint(d, prefix+"failcnt"),
					Limit:   r.uint(d, prefix+"limit_in_bytes"),
				}
			}
			st.Memory.Usage = entry("memory.")
			st.Memory.Swap = entry("memory.memsw.")
			st.Memory.Kernel = entry("memory.kmem.")
			st.Memory.KernelTCP = entry("memory.kmem.tcp.")
		}
	}

	// pids
	if d, _ := c.ctrlDir("pids"); d != "" {
		st.Pids.Current = r.uint(d, "pids.current")
		if l := r.uint(d, "pids.max"); l != math.MaxUint64 {
			st.Pids.Limit = l
		}
	}

	// blkio / io
	if d := c.v1DirFor("blkio"); d != "" {
		parse := func(file string) []BlkioEntry {
			v, ok := r.read(d, file)
			if !ok {
				return nil
			}
			e, err := parseBlkioV1(v)
			if err != nil && r.err == nil {
				r.err = fmt.Errorf("stats: %s: %w", filepath.Join(d, file), err)
			}
			return e
		}
		// CFQ's files when present, else BFQ's, else the throttling layer's (always there).
		switch {
		case exists(filepath.Join(d, "blkio.io_service_bytes_recursive")):
			st.Blkio.IoServiceBytesRecursive = parse("blkio.io_service_bytes_recursive")
			st.Blkio.IoServicedRecursive = parse("blkio.io_serviced_recursive")
			st.Blkio.IoQueuedRecursive = parse("blkio.io_queued_recursive")
			st.Blkio.IoServiceTimeRecursive = parse("blkio.io_service_time_recursive")
			st.Blkio.IoWaitTimeRecursive = parse("blkio.io_wait_time_recursive")
			st.Blkio.IoMergedRecursive = parse("blkio.io_merged_recursive")
			st.Blkio.IoTimeRecursive = parse("blkio.time_recursive")
			st.Blkio.SectorsRecursive = parse("blkio.sectors_recursive")
		case exists(filepath.Join(d, "blkio.bfq.io_service_bytes_recursive")):
			st.Blkio.IoServiceBytesRecursive = parse("blkio.bfq.io_service_bytes_recursive")
			st.Blkio.IoServicedRecursive = parse("blkio.bfq.io_serviced_recursive")
		default:
			st.Blkio.IoServiceBytesRecursive = parse("blkio.throttle.io_service_bytes_recursive")
			st.Blkio.IoServicedRecursive = parse("blkio.throttle.io_serviced_recursive")
		}
	} else if c.v2 != "" && c.layout.onV2("io") {
		if v, ok := r.read(c.v2, "io.stat"); ok {
			b, ios, err := parseIOStat(v)
			if err != nil && r.err == nil {
				r.err = fmt.Errorf("stats: %s: %w", filepath.Join(c.v2, "io.stat"), err)
			}
			st.Blkio.IoServiceBytesRecursive, st.Blkio.IoServicedRecursive = b, ios
		}
	}

	// hugetlb
	if d, v2 := c.ctrlDir("hugetlb"); d != "" {
		for _, size := range hugePageSizes() {
			if v2 {
				h := Hugetlb{Usage: r.uint(d, "hugetlb."+size+".current")}
				if ev := r.kv(d, "hugetlb."+size+".events"); ev != nil {
					h.Failcnt = ev["max"]
				}
				st.Hugetlb[size] = h
			} else {
				st.Hugetlb[size] = Hugetlb{
					Usage:   r.uint(d, "hugetlb."+size+".usage_in_bytes"),
					Max:     r.uint(d, "hugetlb."+size+".max_usage_in_bytes"),
					Failcnt: r.uint(d, "hugetlb."+size+".failcnt"),
				}
			}
		}
	}

	// Pressure stall information lives in the cgroup2 directory, whatever the controllers.
	if c.v2 != "" {
		st.CPU.PSI = r.psi(c.v2, "cpu.pressure")
		st.Memory.PSI = r.psi(c.v2, "memory.pressure")
		st.Blkio.PSI = r.psi(c.v2, "io.pressure")
	}
	if r.err != nil {
		return nil, r.err
	}
	return st, nil
}

// hugePageSizes lists the kernel's hugepage sizes by their hugetlb file names ("2MB", "1GB").
func hugePageSizes() []string {
	ents, err := os.ReadDir("/sys/kernel/mm/hugepages")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		kb, ok := strings.CutPrefix(e.Name(), "hugepages-")
		if !ok {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSuffix(kb, "kB"), 10, 64)
		if err != nil {
			continue
		}
		out = append(out, pageSizeName(n))
	}
	return out
}
