//go:build linux

package integration

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPreserveFds(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	leak, err := os.Create(filepath.Join(t.TempDir(), "leakme"))
	if err != nil {
		t.Fatal(err)
	}
	defer leak.Close()
	b := e.bundle(`echo x >&3; ls -l /proc/self/fd | grep -- '->' | sed 's/.* \([0-9]*\) -> /\1 /'`)
	out := e.outFile()
	// knast gets the pipe as fd 3 and another file as fd 4; only fd 3 is preserved.
	res := e.knastWith(&opts{stdout: out, extraFiles: []*os.File{w, leak}},
		"create", "--preserve-fds", "1", "--bundle", b, "ctr")
	w.Close()
	if res.Code != 0 {
		t.Fatalf("%s", res)
	}
	e.mustKnast("start", "ctr")
	r.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 16)
	n, err := r.Read(buf)
	if err != nil || string(buf[:n]) != "x\n" {
		t.Errorf("read from the preserved pipe: %q, %v; want x", buf[:n], err)
	}
	e.waitStatus("ctr", "stopped")
	e.mustKnast("delete", "ctr")

	listing, err := os.ReadFile(out.Name())
	if err != nil {
		t.Fatal(err)
	}
	fds := map[int]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(listing)), "\n") {
		num, target, _ := strings.Cut(l, " ")
		fd, err := strconv.Atoi(num)
		if err != nil {
			t.Fatalf("fd listing line %q in %q", l, listing)
		}
		fds[fd] = target
	}
	extra := 0
	for fd, target := range fds {
		switch {
		case fd <= 2:
		case fd == 3:
			if !strings.HasPrefix(target, "pipe:") {
				t.Errorf("fd 3 -> %s, want the preserved pipe", target)
			}
		case strings.HasPrefix(target, "/proc/"):
			extra++ // the directory ls is reading
		default:
			t.Errorf("leaked fd %d -> %s inside the container", fd, target)
		}
	}
	if _, ok := fds[3]; !ok || extra > 1 || len(fds) < 4 {
		t.Errorf("fds inside: %v, want 0 1 2 3 and ls's own", fds)
	}
	if strings.Contains(string(listing), "leakme") {
		t.Errorf("the unpreserved fd 4 reached the container: %q", listing)
	}
}

// TestInitExeNotWritable checks the CVE-2019-5736 defence: the container's init, before it execs the
// user process, must not offer a writable path to the knast binary through /proc/<pid>/exe.
func TestInitExeNotWritable(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	sum := func() [32]byte {
		b, err := os.ReadFile(knastBin)
		if err != nil {
			t.Fatal(err)
		}
		return sha256.Sum256(b)
	}
	orig := sum()
	b := e.bundle("sleep 1000")
	e.mustKnast("create", "--bundle", b, "ctr")
	pid := e.state("ctr").Pid
	exe := "/proc/" + strconv.Itoa(pid) + "/exe"
	link, err := os.Readlink(exe)
	if err != nil {
		t.Fatal(err)
	}
	if link == knastBin {
		t.Errorf("init's exe is the knast binary itself (%s), not a sealed copy", link)
	}
	f, err := os.OpenFile(exe, os.O_WRONLY, 0)
	if err == nil {
		_, werr := f.WriteAt([]byte("#!"), 0)
		f.Close()
		t.Errorf("opened %s (-> %s) for write (write error: %v); want the open refused", exe, link, werr)
	} else if !errors.Is(err, syscall.ETXTBSY) && !errors.Is(err, syscall.EPERM) && !errors.Is(err, syscall.EACCES) {
		t.Logf("open %s for write refused with %v", exe, err)
	}
	if sum() != orig {
		t.Errorf("the knast binary on disk changed")
	}
	e.mustKnast("delete", "ctr")
}

// descendants returns the live processes below pid.
func descendants(pid int) map[int]string {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		p, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + ent.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		f := strings.Fields(string(stat[i+1:]))
		if len(f) > 2 {
			pp, _ := strconv.Atoi(f[1])
			children[pp] = append(children[pp], p)
		}
	}
	out := map[int]string{}
	var walk func(int)
	walk = func(p int) {
		for _, c := range children[p] {
			cmd, _ := os.ReadFile("/proc/" + strconv.Itoa(c) + "/cmdline")
			out[c] = strings.ReplaceAll(string(cmd), "\x00", " ")
			walk(c)
		}
	}
	walk(pid)
	return out
}

func TestSigkillDuringCreate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	marker := filepath.Join(t.TempDir(), "hook-started")
	b := e.bundle("echo ran > /tmp/process", func(s *specs.Spec) {
		s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{
			Path: "/bin/sh",
			Args: []string{"sh", "-c", "echo started > " + marker + "; exec sleep 5"},
			Env:  []string{"PATH=/usr/bin:/bin"},
		}}}
	})
	cmd, _ := e.command(e.ctx, nil, "create", "--bundle", b, "ctr")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	e.waitFile(marker)
	// Everything knast started, except the hook (which the runtime-spec lets run to completion).
	procs := descendants(cmd.Process.Pid)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	if r := e.knast("delete", "--force", "ctr"); r.Code != 0 {
		t.Errorf("delete --force after a killed create: %s", r)
	}
	deadline := time.Now().Add(5 * time.Second)
	for pid, cmdline := range procs {
		if strings.HasPrefix(cmdline, "sleep 5") || strings.Contains(cmdline, marker) {
			continue
		}
		for pidAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if pidAlive(pid) {
			t.Errorf("process %d (%s) of the killed create survived delete --force", pid, cmdline)
		}
	}
	if _, err := os.Stat(rootfsPath(b, "tmp/process")); err == nil {
		t.Errorf("the container process ran")
	}
	if r := e.knast("state", "ctr"); r.Code == 0 {
		t.Errorf("state after delete --force: %s", r)
	}
}
