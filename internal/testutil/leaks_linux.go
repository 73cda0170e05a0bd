package testutil

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// TakeSnapshot records the mounts, state entries and processes in sc.
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
	if s.Procs, err = scopedProcs(sc.Token); err != nil {
		return Snapshot{}, err
	}
	return s, nil
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

func scopedProcs(token string) ([]Proc, error) {
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
			if !bytes.Contains(env, []byte(token)) && !strings.Contains(p.Cmdline, token) {
				continue
			}
		} else if !isKnastProc(p) {
			continue
		}
		out = append(out, p)
	}
	return out, nil
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
