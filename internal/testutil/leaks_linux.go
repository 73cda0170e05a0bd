package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/moby/sys/mountinfo"
)

// TakeSnapshot records the mounts, state entries, processes, cgroups, links and nft tables in sc.
func TakeSnapshot(sc Scope) (Snapshot, error) {
	s := Snapshot{Scope: sc}
	var err error
	if s.Mounts, err = scopedMounts(sc.Paths); err != nil {
		return Snapshot{}, err
	}
	if sc.Root != "" {
		if s.StateEntries, err = stateEntries(sc.Root); err != nil {
			return Snapshot{}, err
		}
	}
	if s.Procs, err = scopedProcs(sc.Token, sc.Cgroups); err != nil {
		return Snapshot{}, err
	}
	if s.Cgroups, err = scopedCgroups(sc.Cgroups); err != nil {
		return Snapshot{}, err
	}
	if s.Links, err = scopedLinks(sc.LinkPrefixes); err != nil {
		return Snapshot{}, err
	}
	if s.NftTables, err = scopedNftTables(sc.NftTables); err != nil {
		return Snapshot{}, err
	}
	return s, nil
}

// RemoveCgroupParent removes the cgroup knast made for the containers of state root root
// (KnastCgroupParent) on every hierarchy where it is empty. knast keeps it for the root's next container;
// a test's root has none, and each left behind would stay on the host for good. A parent that still
// holds a container's cgroup stays (rmdir fails): the leak check reports the container.
func RemoveCgroupParent(root string) {
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return
	}
	for _, m := range infos {
		_ = unix.Rmdir(filepath.Join(m.Mountpoint, KnastCgroupParent(root)))
	}
}

// scopedCgroups lists the directories at and under each path on every cgroup v1 and v2 mount.
func scopedCgroups(paths []string) ([]string, error) {
	if len(paths) == 0 {
		return nil, nil
	}
	infos, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("snapshot cgroups: %w", err)
	}
	var out []string
	for _, m := range infos {
		for _, p := range paths {
			top := filepath.Join(m.Mountpoint, filepath.Clean("/"+p))
			err := filepath.WalkDir(top, func(q string, d fs.DirEntry, err error) error {
				if err != nil {
					if errors.Is(err, fs.ErrNotExist) {
						return nil // not there, or removed while walking
					}
					return err
				}
				if d.IsDir() {
					out = append(out, q)
				}
				return nil
			})
			if err != nil {
				return nil, fmt.Errorf("snapshot cgroups: %w", err)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// scopedLinks lists the host's network interfaces (this network namespace's) with one of prefixes.
func scopedLinks(prefixes []string) ([]string, error) {
	if len(prefixes) == 0 {
		return nil, nil
	}
	ents, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return nil, fmt.Errorf("snapshot links: %w", err)
	}
	var out []string
	for _, e := range ents {
		if hasAnyPrefix(e.Name(), prefixes) {
			out = append(out, e.Name())
		}
	}
	slices.Sort(out)
	return out, nil
}

// scopedNftTables lists the nftables tables whose name has one of prefixes, as "family name".
func scopedNftTables(prefixes []string) ([]string, error) {
	if len(prefixes) == 0 {
		return nil, nil
	}
	nft, err := exec.LookPath("nft")
	if err != nil {
		return nil, nil // no nft: nothing can have made tables through it
	}
	out, err := exec.Command(nft, "list", "tables").Output()
	if err != nil {
		return nil, fmt.Errorf("snapshot nft tables: %s list tables: %w", nft, err)
	}
	var tables []string
	for line := range strings.Lines(string(out)) {
		f := strings.Fields(line) // "table inet name"
		if len(f) == 3 && f[0] == "table" && hasAnyPrefix(f[2], prefixes) {
			tables = append(tables, f[1]+" "+f[2])
		}
	}
	slices.Sort(tables)
	return tables, nil
}

func hasAnyPrefix(s string, prefixes []string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) })
}

func scopedMounts(paths []string) ([]string, error) {
	infos, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("snapshot mounts: %w", err)
	}
	var prefixes []string
	for _, p := range paths {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		prefixes = append(prefixes, filepath.Clean(p))
	}
	var out []string
	for _, m := range infos {
		if len(prefixes) > 0 && !slices.ContainsFunc(prefixes, func(p string) bool {
			return p == "/" || strings.HasPrefix(m.Mountpoint+"/", p+"/")
		}) {
			continue
		}
		out = append(out, m.Mountpoint+" "+m.FSType+" "+m.Source)
	}
	slices.Sort(out)
	return out, nil
}

func stateEntries(root string) ([]string, error) {
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == "." || isStateDB(rel) {
			return nil
		}
		out = append(out, rel)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot state %s: %w", root, err)
	}
	slices.Sort(out)
	return out, nil
}

// envHas reports whether a /proc environ holds token: as a whole entry when the token is NAME=VALUE (a
// test named "T_a" must not claim the processes of "T_a_b"), anywhere otherwise.
func envHas(env []byte, token string) bool {
	if !strings.Contains(token, "=") {
		return bytes.Contains(env, []byte(token))
	}
	for e := range bytes.SplitSeq(env, []byte{0}) {
		if string(e) == token {
			return true
		}
	}
	return false
}

func scopedProcs(token string, cgroups []string) ([]Proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("snapshot processes: %w", err)
	}
	self := os.Getpid()
	var out []Proc
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		p, ok := readProc(pid)
		if !ok {
			continue // gone, or a zombie: nothing is left running
		}
		if token != "" {
			env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
			if !envHas(env, token) && !strings.Contains(p.Cmdline, token) && !inCgroups(pid, cgroups) {
				continue
			}
		} else if !isKnastProc(p) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// inCgroups reports whether pid sits at or below one of the cgroup paths on any hierarchy: a container's
// init carries no test token in its environment (knast gives it its own), but it is in the container's
// cgroups from its first instruction on.
func inCgroups(pid int, cgroups []string) bool {
	if len(cgroups) == 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		// "id:controllers:path"; the path itself may contain ':'.
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range cgroups {
			c = filepath.Clean("/" + c)
			if parts[2] == c || strings.HasPrefix(parts[2], c+"/") {
				return true
			}
		}
	}
	return false
}

// LiveProc describes pid if it is alive; ok is false for processes that exited or are zombies.
// Comparing Start with an earlier LiveProc tells a process from a later one reusing its pid.
func LiveProc(pid int) (p Proc, ok bool) {
	return readProc(pid)
}

// readProc reads a live process; ok is false for processes that exited or are zombies.
func readProc(pid int) (Proc, bool) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Proc{}, false
	}
	// The command name may contain spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return Proc{}, false
	}
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return Proc{}, false
	}
	start, err := strconv.ParseUint(fields[19], 10, 64)
	if err != nil {
		return Proc{}, false
	}
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return Proc{
		Pid:     pid,
		Start:   start,
		Exe:     exe,
		Cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")),
	}, true
}

func isKnastProc(p Proc) bool {
	if strings.HasPrefix(p.Exe, "/memfd:knast") {
		return true
	}
	args := strings.Fields(p.Cmdline)
	return len(args) >= 2 && filepath.Base(args[0]) == "knast" && args[1] == "init"
}
