package freebsd

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AnnotationRctl adds rctl rules for the container's jail beyond what linux.resources maps to:
// comma-separated "resource:action=amount[/per]", e.g. "openfiles:deny=1024,readbps:throttle=10m".
const AnnotationRctl = "io.github.knast.freebsd.rctl"

// ErrRacctDisabled is returned when limits are asked for on a kernel without resource accounting.
var ErrRacctDisabled = errors.New("resource limits need racct: add kern.racct.enable=1 to /boot/loader.conf and reboot")

// rctlResources are the resources of rctl(8).
var rctlResources = []string{
	"cputime", "datasize", "stacksize", "coredumpsize", "memoryuse", "memorylocked", "maxproc",
	"openfiles", "vmemoryuse", "pseudoterminals", "swapuse", "nthr", "msgqqueued", "msgqsize", "nmsgq",
	"nsem", "nsemop", "nshm", "shmsize", "wallclock", "pcpu", "readbps", "writebps", "readiops", "writeiops",
}

// Rule is one rctl rule on a jail.
type Rule struct {
	Jail     string
	Resource string
	Action   string // deny, log, devctl, throttle, sig<name>
	Amount   uint64
	Per      string // process, user, loginclass or jail; empty is the subject (the jail)
}

// String is the rule as rctl_add_rule(2) parses it: "jail:NAME:resource:action=amount[/per]".
func (r Rule) String() string {
	s := fmt.Sprintf("jail:%s:%s:%s=%d", r.Jail, r.Resource, r.Action, r.Amount)
	if r.Per != "" {
		s += "/" + r.Per
	}
	return s
}

// RctlFilter is the filter that matches every rule of a jail, for rctl_remove_rule(2) and rctl_get_racct(2).
func RctlFilter(jail string) string { return "jail:" + jail }

// Rules maps the config's resources onto rctl rules for jail: memory.limit → memoryuse, the swap beyond it
// → swapuse, pids.limit → maxproc, cpu quota/period → pcpu (percent of one CPU), plus the rules of the
// AnnotationRctl annotation. ignored names the set fields rctl has no counterpart for.
func Rules(jail string, r *specs.LinuxResources, annotations map[string]string) (rules []Rule, ignored []string, err error) {
	if r != nil {
		if m := r.Memory; m != nil {
			if m.Limit != nil && *m.Limit > 0 {
				rules = append(rules, Rule{Jail: jail, Resource: "memoryuse", Action: "deny", Amount: uint64(*m.Limit)})
				// Linux's swap limit is memory plus swap.
				if m.Swap != nil && *m.Swap >= *m.Limit {
					rules = append(rules, Rule{Jail: jail, Resource: "swapuse", Action: "deny", Amount: uint64(*m.Swap - *m.Limit)})
				}
			} else if m.Swap != nil && *m.Swap > 0 {
				ignored = append(ignored, "memory.swap (without memory.limit)")
			}
			if m.Reservation != nil || m.Kernel != nil || m.KernelTCP != nil || m.Swappiness != nil {
				ignored = append(ignored, "memory.reservation/kernel/kernelTCP/swappiness")
			}
		}
		if c := r.CPU; c != nil {
			if c.Quota != nil && *c.Quota > 0 && c.Period != nil && *c.Period > 0 {
				pct := (uint64(*c.Quota)*100 + *c.Period - 1) / *c.Period
				rules = append(rules, Rule{Jail: jail, Resource: "pcpu", Action: "deny", Amount: pct})
			}
			if c.Shares != nil || c.Cpus != "" || c.Mems != "" || c.RealtimeRuntime != nil || c.RealtimePeriod != nil || c.Idle != nil {
				ignored = append(ignored, "cpu.shares/cpus/mems/realtime/idle")
			}
		}
		if r.Pids != nil && r.Pids.Limit != nil && *r.Pids.Limit > 0 {
			rules = append(rules, Rule{Jail: jail, Resource: "maxproc", Action: "deny", Amount: uint64(*r.Pids.Limit)})
		}
		if r.BlockIO != nil {
			ignored = append(ignored, "blockIO (rctl's readbps/writebps are not per device: use "+AnnotationRctl+")")
		}
		if len(r.HugepageLimits) > 0 || r.Network != nil || len(r.Rdma) > 0 || len(r.Unified) > 0 {
			ignored = append(ignored, "hugepageLimits/network/rdma/unified")
		}
	}
	if v, ok := annotations[AnnotationRctl]; ok {
		extra, err := ParseRules(jail, v)
		if err != nil {
			return nil, nil, fmt.Errorf("annotations[%q]: %w", AnnotationRctl, err)
		}
		// A later rule on the same resource and action replaces an earlier one, as rctl_add_rule does.
		for _, e := range extra {
			rules = slices.DeleteFunc(rules, func(r Rule) bool {
				return r.Resource == e.Resource && r.Action == e.Action && r.Per == e.Per
			})
			rules = append(rules, e)
		}
	}
	return rules, ignored, nil
}

// ParseRules parses "resource:action=amount[/per],..." for jail. Amounts take rctl(8)'s k, m, g, t
// suffixes (powers of 1024); the kernel itself reads plain numbers only.
func ParseRules(jail, list string) ([]Rule, error) {
	var out []Rule
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		res, rest, ok := strings.Cut(item, ":")
		action, amount, ok2 := strings.Cut(rest, "=")
		if !ok || !ok2 {
			return nil, fmt.Errorf("rule %q: want resource:action=amount", item)
		}
		if !slices.Contains(rctlResources, res) {
			return nil, fmt.Errorf("rule %q: unknown resource %q", item, res)
		}
		if !validAction(action) {
			return nil, fmt.Errorf("rule %q: unknown action %q", item, action)
		}
		amount, per, _ := strings.Cut(amount, "/")
		switch per {
		case "", "process", "user", "loginclass", "jail":
		default:
			return nil, fmt.Errorf("rule %q: unknown per %q", item, per)
		}
		n, err := expandNumber(amount)
		if err != nil {
			return nil, fmt.Errorf("rule %q: %w", item, err)
		}
		out = append(out, Rule{Jail: jail, Resource: res, Action: action, Amount: n, Per: per})
	}
	return out, nil
}

func validAction(a string) bool {
	switch a {
	case "deny", "log", "devctl", "throttle":
		return true
	}
	sig, ok := strings.CutPrefix(a, "sig")
	if !ok || sig == "" {
		return false
	}
	for _, c := range sig {
		if c < 'a' || c > 'z' {
			return false
		}
	}
	return true
}

// expandNumber is expand_number(3): a number with an optional k, m, g, t (or p, e) suffix.
func expandNumber(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	mult := uint64(1)
	if s != "" {
		if i := strings.IndexByte("kmgtpe", strings.ToLower(s[len(s)-1:])[0]); i >= 0 {
			mult = 1 << (10 * (i + 1))
			s = s[:len(s)-1]
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("amount %q is not a number", s)
	}
	if n > ^uint64(0)/mult {
		return 0, fmt.Errorf("amount %q overflows", s)
	}
	return n * mult, nil
}

// ParseRacct parses rctl_get_racct(2)'s answer: "resource=amount,..." (a NUL may end it).
func ParseRacct(out string) (map[string]uint64, error) {
	out = strings.TrimRight(out, "\x00\n")
	m := map[string]uint64{}
	for kv := range strings.SplitSeq(out, ",") {
		if kv == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, fmt.Errorf("racct %q: want resource=amount", kv)
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("racct %q: %w", kv, err)
		}
		m[k] = n
	}
	return m, nil
}

// Stats is the data of a stats event on FreeBSD, runc's JSON shape where racct has the number.
type Stats struct {
	CPU struct {
		Usage struct {
			Total uint64 `json:"total"` // nanoseconds
		} `json:"usage"`
	} `json:"cpu"`
	Memory struct {
		Usage struct {
			Usage uint64 `json:"usage"`
			Limit uint64 `json:"limit,omitempty"`
		} `json:"usage"`
		Swap struct {
			Usage uint64 `json:"usage"`
		} `json:"swap_usage"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
		Limit   uint64 `json:"limit,omitempty"`
	} `json:"pids"`
	// Racct is every resource racct counts for the jail, by rctl's names.
	Racct map[string]uint64 `json:"freebsd_racct"`
}

// StatsFrom fills Stats from a racct usage map and the jail's rules (for the limits).
func StatsFrom(usage map[string]uint64, rules []Rule) *Stats {
	st := &Stats{Racct: usage}
	st.CPU.Usage.Total = usage["cputime"] * 1_000_000_000 // racct counts cputime in seconds
	st.Memory.Usage.Usage = usage["memoryuse"]
	st.Memory.Swap.Usage = usage["swapuse"]
	st.Pids.Current = usage["maxproc"]
	for _, r := range rules {
		if r.Action != "deny" || r.Per != "" {
			continue
		}
		switch r.Resource {
		case "memoryuse":
			st.Memory.Usage.Limit = r.Amount
		case "maxproc":
			st.Pids.Limit = r.Amount
		}
	}
	return st
}
