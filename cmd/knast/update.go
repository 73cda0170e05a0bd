package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"
)

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

// updateCmd changes a running container's resources: a runtime-spec resources JSON (--resources FILE or -)
// and/or runc's single-value flags, which win over the JSON.
func updateCmd() command {
	return command{summary: "update a container's resource limits", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		resources := fs.StringP("resources", "r", "", "path to a resources JSON, or - for stdin")
		str := map[string]*string{}
		for _, n := range []string{"blkio-weight", "cpu-period", "cpu-quota", "cpu-rt-period", "cpu-rt-runtime",
			"cpu-share", "cpuset-cpus", "cpuset-mems", "kernel-memory", "kernel-memory-tcp", "memory",
			"memory-reservation", "memory-swap", "pids-limit", "cpu-idle"} {
			str[n] = fs.String(n, "", "set "+strings.ReplaceAll(n, "-", " "))
		}
		l3 := fs.String("l3-cache-schema", "", "Intel RDT L3 cache schema (not supported)")
		mb := fs.String("mem-bw-schema", "", "Intel RDT memory bandwidth schema (not supported)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("update", args, 1, "a container ID"); err != nil {
				return err
			}
			if *l3 != "" || *mb != "" {
				return fmt.Errorf("update: Intel RDT is not supported on this host")
			}
			r := &specs.LinuxResources{}
			if *resources != "" {
				var in io.Reader = os.Stdin
				if *resources != "-" {
					f, err := os.Open(*resources)
					if err != nil {
						return fmt.Errorf("update: --resources: %w", err)
					}
					defer f.Close()
					in = f
				}
				if err := json.NewDecoder(in).Decode(r); err != nil {
					return fmt.Errorf("update: --resources %s: %w", *resources, err)
				}
			}
			set := func(name string) bool { return fs.Changed(name) }
			if err := applyUpdateFlags(r, str, set); err != nil {
				return err
			}
			return a.manager().Update(ctx, args[0], r)
		}
	}}
}

func applyUpdateFlags(r *specs.LinuxResources, v map[string]*string, set func(string) bool) error {
	mem := func() *specs.LinuxMemory {
		if r.Memory == nil {
			r.Memory = &specs.LinuxMemory{}
		}
		return r.Memory
	}
	cpu := func() *specs.LinuxCPU {
		if r.CPU == nil {
			r.CPU = &specs.LinuxCPU{}
		}
		return r.CPU
	}
	for name, p := range v {
		if !set(name) {
			continue
		}
		val := *p
		var err error
		switch name {
		case "memory", "memory-reservation", "memory-swap", "kernel-memory", "kernel-memory-tcp":
			var n int64
			if n, err = parseBytes(val); err == nil {
				switch name {
				case "memory":
					mem().Limit = &n
				case "memory-reservation":
					mem().Reservation = &n
				case "memory-swap":
					mem().Swap = &n
				case "kernel-memory":
					mem().Kernel = &n
				case "kernel-memory-tcp":
					mem().KernelTCP = &n
				}
			}
		case "cpu-quota", "cpu-rt-runtime", "pids-limit":
			var n int64
			if n, err = strconv.ParseInt(val, 10, 64); err == nil {
				switch name {
				case "cpu-quota":
					cpu().Quota = &n
				case "cpu-rt-runtime":
					cpu().RealtimeRuntime = &n
				case "pids-limit":
					r.Pids = &specs.LinuxPids{Limit: &n}
				}
			}
		case "cpu-period", "cpu-rt-period", "cpu-share":
			var n uint64
			if n, err = strconv.ParseUint(val, 10, 64); err == nil {
				switch name {
				case "cpu-period":
					cpu().Period = &n
				case "cpu-rt-period":
					cpu().RealtimePeriod = &n
				case "cpu-share":
					cpu().Shares = &n
				}
			}
		case "blkio-weight":
			var n uint64
			if n, err = strconv.ParseUint(val, 10, 16); err == nil {
				w := uint16(n)
				r.BlockIO = &specs.LinuxBlockIO{Weight: &w}
			}
		case "cpu-idle":
			var n int64
			if n, err = strconv.ParseInt(val, 10, 64); err == nil {
				cpu().Idle = &n
			}
		case "cpuset-cpus":
			cpu().Cpus = val
		case "cpuset-mems":
			cpu().Mems = val
		}
		if err != nil {
			return fmt.Errorf("update: --%s %q: %w", name, val, err)
		}
	}
	return nil
}

// parseBytes reads sizes like runc's flags: a number with an optional k/m/g/t suffix (powers of 1024); -1
// means unlimited.
func parseBytes(s string) (int64, error) {
	if s == "-1" {
		return -1, nil
	}
	t := strings.ToLower(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "b"), "i")
	mult := int64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'k':
			mult = 1 << 10
		case 'm':
			mult = 1 << 20
		case 'g':
			mult = 1 << 30
		case 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("not a size")
	}
	return n * mult, nil
}
