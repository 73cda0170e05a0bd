package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Scope limits what a Snapshot looks at, so that parallel tests do not see each other's resources.
type Scope struct {
	// Root is a knast --root directory: every entry under it other than the database is per-container
	// state. Empty skips the state check.
	Root string
	// Paths restricts the mount check to mount points at or under these paths; empty means every mount
	// of the host.
	Paths []string
	// Token, when set, restricts the process check to processes whose environment or command line
	// contains it (tests put it in the knast command's and the container process's environment), or
	// that sit in one of Cgroups (a container's init, whose environment is knast's own); empty means
	// every knast process (exe a memfd:knast copy, or command line "knast init").
	Token string
	// Cgroups are cgroup paths (absolute, as in linux.cgroupsPath, e.g. KnastCgroupParent(root)) whose
	// directories, the path itself included, are checked on every mounted cgroup hierarchy.
	Cgroups []string
	// LinkPrefixes checks the host's network interfaces whose name starts with one of these.
	LinkPrefixes []string
	// NftTables checks the nftables tables ("family name") whose name starts with one of these; it
	// is skipped when nft is not installed.
	NftTables []string
}

// KnastCgroupParent is the cgroup under which knast places the containers of state root root that
// set no linux.cgroupsPath. It mirrors internal/container's defaultCgroupPath (the hardening suite
// checks the two agree), so a leak check can watch one root's cgroups and not the host's others.
func KnastCgroupParent(root string) string {
	root = filepath.Clean(root)
	if root == "/run/knast" {
		return "/knast"
	}
	sum := sha256.Sum256([]byte(root))
	return "/knast-" + hex.EncodeToString(sum[:4])
}

// Proc is a process seen by a Snapshot; Start (field 22 of /proc/<pid>/stat) guards against pid reuse.
type Proc struct {
	Pid     int
	Start   uint64
	Exe     string
	Cmdline string
}

func (p Proc) String() string {
	return fmt.Sprintf("pid %d exe %q cmdline %q", p.Pid, p.Exe, p.Cmdline)
}

// Snapshot records the mounts, knast state entries, knast-related processes, cgroups, network links
// and nft tables in a Scope.
type Snapshot struct {
	Scope        Scope
	Mounts       []string // "mountpoint fstype source", sorted
	StateEntries []string // paths relative to Scope.Root, sorted
	Procs        []Proc
	Cgroups      []string // cgroup directories, "mountpoint/path", sorted
	Links        []string // network interface names, sorted
	NftTables    []string // "family name", sorted
}

// Leaks lists what after holds that s did not: mounts (by multiplicity), state entries, processes,
// cgroups, network links and nft tables, one human-readable line each. An empty result means nothing leaked.
func (s Snapshot) Leaks(after Snapshot) []string {
	var out []string
	for _, m := range multisetNew(s.Mounts, after.Mounts) {
		out = append(out, "mount: "+m)
	}
	for _, e := range multisetNew(s.StateEntries, after.StateEntries) {
		out = append(out, "state entry: "+e)
	}
	for _, c := range multisetNew(s.Cgroups, after.Cgroups) {
		out = append(out, "cgroup: "+c)
	}
	for _, l := range multisetNew(s.Links, after.Links) {
		out = append(out, "network link: "+l)
	}
	for _, n := range multisetNew(s.NftTables, after.NftTables) {
		out = append(out, "nft table: "+n)
	}
	type key struct {
		pid   int
		start uint64
	}
	seen := make(map[key]bool, len(s.Procs))
	for _, p := range s.Procs {
		seen[key{p.Pid, p.Start}] = true
	}
	for _, p := range after.Procs {
		if !seen[key{p.Pid, p.Start}] {
			out = append(out, "process: "+p.String())
		}
	}
	return out
}

// WaitLeaks retakes the snapshot in s's scope until it shows no leaks against s or timeout passes
// (killed processes take a moment to disappear), and returns the last leaks found.
func (s Snapshot) WaitLeaks(timeout time.Duration) []string {
	deadline := time.Now().Add(timeout)
	for {
		after, err := TakeSnapshot(s.Scope)
		var leaks []string
		if err != nil {
			leaks = []string{"snapshot: " + err.Error()}
		} else {
			leaks = s.Leaks(after)
		}
		if len(leaks) == 0 || time.Now().After(deadline) {
			return leaks
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// multisetNew returns the elements of after beyond their count in before.
func multisetNew(before, after []string) []string {
	count := make(map[string]int, len(before))
	for _, b := range before {
		count[b]++
	}
	var out []string
	for _, a := range after {
		if count[a] > 0 {
			count[a]--
			continue
		}
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// isStateDB reports whether a --root entry is the store itself or knast's cache (compiled seccomp
// programs, shared by all containers) rather than per-container state.
func isStateDB(rel string) bool {
	return strings.HasPrefix(rel, "knast.db") || rel == "@cache" || strings.HasPrefix(rel, "@cache/")
}

// CheckSuite runs a test suite (m.Run) between two snapshots of scope and fails it (exit status 1)
// when anything new is left: a suite's TestMain returns CheckSuite(scope, m.Run).
func CheckSuite(name string, scope Scope, run func() int) int {
	before, err := TakeSnapshot(scope)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: leak snapshot: %v\n", name, err)
		return 1
	}
	code := run()
	if leaks := before.WaitLeaks(5 * time.Second); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "%s suite leaked:\n  %s\n", name, strings.Join(leaks, "\n  "))
		code = 1
	}
	return code
}
