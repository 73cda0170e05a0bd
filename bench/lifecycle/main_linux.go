//go:build linux

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/bench/internal/benchutil"
	"github.com/knast/knast/internal/testutil"
)

// cmdTimeout bounds one runtime invocation and one wait for a container's exit, so a hung runtime
// cannot hang the benchmark.
const cmdTimeout = 30 * time.Second

// Phases of one lifecycle, in order.
const (
	phaseCreate = iota
	phaseStart
	phaseExit
	phaseDelete
	numPhases
)

var phaseNames = [numPhases]string{"create", "start", "exit", "delete"}

type options struct {
	rounds, warmup, memSamples int
	knast, runc, crun          string
}

// subject is one runtime under test with everything measured about it.
type subject struct {
	name    string
	path    string // absolute path of the binary
	root    string // its own --root, so the runtimes never see each other's state
	bundle  string
	dir     string // pid files
	version string
	skip    string // why it is not (or no longer) measured; empty while it is
	errLog  *os.File
	live    map[string]bool // containers that exist and must be deleted on the way out
	phases  [numPhases][]time.Duration
	total   []time.Duration
	mem     []memSample
}

// memSample is the memory of one container in "created".
type memSample struct {
	rss, pss int64
	anon     int64  // anonymous pages: what the waiting init holds that no other process shares or can reclaim from a file
	others   []proc // processes of the runtime still running beside the container's init
	// ownCgroup says whether the init was moved out of the benchmark's cgroups: a runtime that skips
	// cgroup setup saves work the others do, which the reader must know to read the times.
	ownCgroup bool
}

type proc struct {
	pid, ppid int
	comm      string
	state     byte
	rss, pss  int64
	anon      int64
}

func main() { benchutil.Main("lifecycle", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("lifecycle", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 50, "measured lifecycles per runtime")
	fs.IntVar(&o.warmup, "warmup", 3, "unmeasured lifecycles per runtime before the first round")
	fs.IntVar(&o.memSamples, "mem-samples", 5, "containers per runtime sampled in \"created\" for memory")
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary")
	fs.StringVar(&o.runc, "runc", "runc", "runc binary")
	fs.StringVar(&o.crun, "crun", "crun", "crun binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.warmup < 0 || o.memSamples < 0 {
		return fmt.Errorf("need -rounds >= 1, -warmup >= 0, -mem-samples >= 0")
	}
	if err := benchutil.NeedRoot("the runtimes create namespaces and cgroups"); err != nil {
		return err
	}
	// Orphaned container inits are reparented to us, as they are to a containerd shim, so every
	// runtime's init is waited for and reaped the same way.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}

	tmp, err := os.MkdirTemp("", "knast-bench-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", tmp, rerr)
		}
	}()

	subjects, err := setup(ctx, o, tmp)
	if err != nil {
		return err
	}
	defer func() {
		// Cleanup must run even after Ctrl-C cancelled ctx.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*cmdTimeout)
		defer cancel()
		for _, s := range subjects {
			if cerr := s.cleanup(cctx); cerr != nil && err == nil {
				err = cerr
			}
		}
		benchutil.ReapOrphans()
	}()

	fmt.Fprintf(out, "warming up (%d lifecycles per runtime)...\n", o.warmup)
	for i := 0; i < o.warmup; i++ {
		for _, s := range subjects {
			if s.skip != "" {
				continue
			}
			if _, err := s.lifecycle(ctx, fmt.Sprintf("warm%d", i)); err != nil {
				s.skip = err.Error()
			}
		}
	}
	fmt.Fprintf(out, "measuring %d rounds, interleaved...\n", o.rounds)
	for i := 0; i < o.rounds && ctx.Err() == nil; i++ {
		for _, s := range subjects {
			if s.skip != "" {
				continue
			}
			d, err := s.lifecycle(ctx, fmt.Sprintf("r%d", i))
			if err != nil {
				s.skip = fmt.Sprintf("round %d: %v", i, err)
				continue
			}
			var total time.Duration
			for p := range d {
				s.phases[p] = append(s.phases[p], d[p])
				total += d[p]
			}
			s.total = append(s.total, total)
		}
	}
	for i := 0; i < o.memSamples && ctx.Err() == nil; i++ {
		for _, s := range subjects {
			if s.skip != "" {
				continue
			}
			m, err := s.memory(ctx, fmt.Sprintf("m%d", i))
			if err != nil {
				s.skip = fmt.Sprintf("memory sample %d: %v", i, err)
				continue
			}
			s.mem = append(s.mem, m)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if err := report(out, o, subjects); err != nil {
		return err
	}
	// knast is what this benchmark is for: a knast that cannot run the lifecycle fails `make bench`.
	if subjects[0].skip != "" {
		return fmt.Errorf("knast was not measured: %s", subjects[0].skip)
	}
	return nil
}

// setup builds the shared rootfs and one bundle and state root per runtime. The config is `runc spec`'s
// default (knast's when runc is missing) with terminal off, /bin/true as the process and ociVersion
// 1.0.2, the newest crun 1.8 accepts; every runtime gets the same config.
func setup(ctx context.Context, o options, tmp string) ([]*subject, error) {
	rootfs := filepath.Join(tmp, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return nil, fmt.Errorf("busybox rootfs (is busybox-static installed?): %w", err)
	}
	subjects := []*subject{
		{name: "knast", path: o.knast},
		{name: "runc", path: o.runc},
		{name: "crun", path: o.crun},
	}
	for _, s := range subjects {
		p, err := exec.LookPath(s.path)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			s.skip = fmt.Sprintf("not found (%v)", err)
			if s.name == "knast" {
				s.skip += "; run `make build` first"
			}
			continue
		}
		s.path = p
		s.version = benchutil.Version(ctx, cmdTimeout, p, "--version")
	}

	var gen *subject
	for _, name := range []string{"runc", "knast"} {
		if s := byName(subjects, name); s.skip == "" {
			gen = s
			break
		}
	}
	if gen == nil {
		return nil, errors.New("neither runc nor knast is available to generate a config")
	}
	spec, err := benchutil.RuntimeSpec(ctx, gen.path, filepath.Join(tmp, "spec"))
	if err != nil {
		return nil, err
	}
	adapt(spec, rootfs)

	for _, s := range subjects {
		s.dir = filepath.Join(tmp, s.name)
		s.root = filepath.Join(s.dir, "state")
		s.bundle = filepath.Join(s.dir, "bundle")
		s.live = map[string]bool{}
		for _, d := range []string{s.root, s.bundle} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
		}
		if err := testutil.WriteSpec(s.bundle, spec); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		f, err := os.Create(filepath.Join(s.dir, "stderr"))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		s.errLog = f
	}
	return subjects, nil
}

// adapt turns a generated default config into the benchmark's: a process that exits at once, no
// terminal, the shared read-only rootfs.
func adapt(s *specs.Spec, rootfs string) {
	s.Version = "1.0.2"
	if s.Process == nil {
		s.Process = &specs.Process{Cwd: "/"}
	}
	s.Process.Terminal = false
	s.Process.Args = []string{"/bin/true"}
	if s.Root == nil {
		s.Root = &specs.Root{}
	}
	s.Root.Path = rootfs
	s.Root.Readonly = true
}

func byName(subjects []*subject, name string) *subject {
	for _, s := range subjects {
		if s.name == name {
			return s
		}
	}
	return nil
}

// exec runs `<runtime> --root R args...` with stdin/stdout on /dev/null (no pipes: a container
// inheriting them would keep the command from finishing) and stderr in a file, returned in the error.
func (s *subject) exec(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	if err := s.errLog.Truncate(0); err != nil {
		return fmt.Errorf("truncate stderr log: %w", err)
	}
	if _, err := s.errLog.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind stderr log: %w", err)
	}
	cmd := exec.CommandContext(ctx, s.path, append([]string{"--root", s.root}, args...)...)
	cmd.Stderr = s.errLog
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(s.errLog.Name())
		return fmt.Errorf("%s %s: %w: %s", s.name, args[0], err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// create creates container id and returns its init's pid (from --pid-file) and a pidfd for it.
func (s *subject) create(ctx context.Context, id string) (pid, pidfd int, err error) {
	pidFile := filepath.Join(s.dir, id+".pid")
	defer os.Remove(pidFile)
	s.live[id] = true
	if err := s.exec(ctx, "create", "--bundle", s.bundle, "--pid-file", pidFile, id); err != nil {
		return 0, -1, err
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, -1, fmt.Errorf("%s create: pid file: %w", s.name, err)
	}
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		return 0, -1, fmt.Errorf("%s create: pid file %q: not a pid", s.name, b)
	}
	pidfd, err = unix.PidfdOpen(pid, 0)
	if err != nil {
		return 0, -1, fmt.Errorf("pidfd_open %d: %w", pid, err)
	}
	return pid, pidfd, nil
}

// lifecycle runs create → start → wait for exit → delete for one container and times each phase.
// Opening the pidfd and reading the pid file are outside the timed phases.
func (s *subject) lifecycle(ctx context.Context, tag string) ([numPhases]time.Duration, error) {
	var d [numPhases]time.Duration
	id := fmt.Sprintf("bench-%d-%s-%s", os.Getpid(), s.name, tag)
	t := time.Now()
	_, pidfd, err := s.create(ctx, id)
	d[phaseCreate] = time.Since(t)
	if err != nil {
		return d, err
	}
	defer unix.Close(pidfd)
	if err := s.finish(ctx, id, pidfd, &d); err != nil {
		return d, err
	}
	return d, nil
}

// finish starts a created container, waits for its init to exit and deletes it, timing each phase.
func (s *subject) finish(ctx context.Context, id string, pidfd int, d *[numPhases]time.Duration) error {
	t := time.Now()
	if err := s.exec(ctx, "start", id); err != nil {
		return err
	}
	d[phaseStart] = time.Since(t)
	t = time.Now()
	if err := waitExit(ctx, pidfd); err != nil {
		return fmt.Errorf("%s: wait for exit: %w", s.name, err)
	}
	d[phaseExit] = time.Since(t)
	t = time.Now()
	if err := s.exec(ctx, "delete", id); err != nil {
		return err
	}
	d[phaseDelete] = time.Since(t)
	delete(s.live, id)
	// Intermediate processes of a runtime that exit after us becoming their reaper would pile up.
	benchutil.ReapOrphans()
	return nil
}

// memory creates a container, samples the memory of its init and of any other process the runtime
// left running, then runs it to the end like a lifecycle.
func (s *subject) memory(ctx context.Context, tag string) (memSample, error) {
	id := fmt.Sprintf("bench-%d-%s-%s", os.Getpid(), s.name, tag)
	pid, pidfd, err := s.create(ctx, id)
	if err != nil {
		return memSample{}, err
	}
	defer unix.Close(pidfd)
	var m memSample
	procs, err := descendants(os.Getpid())
	if err != nil {
		return m, err
	}
	found := false
	for _, p := range procs {
		if p.pid == pid {
			m.rss, m.pss, m.anon, found = p.rss, p.pss, p.anon, true
			continue
		}
		if p.state != 'Z' {
			m.others = append(m.others, p)
		}
	}
	if !found {
		// Not under us (a runtime that keeps its own parent for the init): read it directly.
		p, err := readProc(pid)
		if err != nil {
			return m, err
		}
		m.rss, m.pss, m.anon = p.rss, p.pss, p.anon
	}
	if m.ownCgroup, err = ownCgroup(pid); err != nil {
		return m, err
	}
	var d [numPhases]time.Duration
	return m, s.finish(ctx, id, pidfd, &d)
}

// ownCgroup reports whether pid sits in other cgroups than the benchmark itself.
func ownCgroup(pid int) (bool, error) {
	mine, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return false, fmt.Errorf("read own cgroups: %w", err)
	}
	theirs, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return false, fmt.Errorf("read cgroups of %d: %w", pid, err)
	}
	return string(mine) != string(theirs), nil
}

// cleanup force-deletes the containers a failed or interrupted run left behind.
func (s *subject) cleanup(ctx context.Context) error {
	var errs []error
	for id := range s.live {
		if err := s.exec(ctx, "delete", "--force", id); err != nil {
			errs = append(errs, err)
		}
	}
	if s.errLog != nil {
		s.errLog.Close()
	}
	return errors.Join(errs...)
}

// waitExit polls the pidfd until the process exits, then reaps it when it is our child (after its
// runtime's create exited, it was reparented to us).
func waitExit(ctx context.Context, pidfd int) error {
	deadline := time.Now().Add(cmdTimeout)
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return fmt.Errorf("still running after %s", cmdTimeout)
		}
		// Wake up now and then to notice a cancelled ctx.
		n, err := unix.Poll(fds, int(min(left, 200*time.Millisecond)/time.Millisecond)+1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("poll pidfd: %w", err)
		}
		if n > 0 {
			break
		}
	}
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED, nil)
	if err != nil && !errors.Is(err, unix.ECHILD) {
		return fmt.Errorf("waitid: %w", err)
	}
	return nil
}

// descendants lists every process below pid in the process tree, with its memory.
func descendants(pid int) ([]proc, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list /proc: %w", err)
	}
	children := map[int][]proc{}
	for _, e := range ents {
		var p int
		if _, err := fmt.Sscan(e.Name(), &p); err != nil || p <= 0 {
			continue
		}
		pr, err := readProc(p)
		if err != nil {
			continue // exited meanwhile
		}
		children[pr.ppid] = append(children[pr.ppid], pr)
	}
	var out []proc
	queue := []int{pid}
	for len(queue) > 0 {
		for _, c := range children[queue[0]] {
			out = append(out, c)
			queue = append(queue, c.pid)
		}
		queue = queue[1:]
	}
	return out, nil
}

// readProc reads a process's parent, name, state, RSS (/proc/pid/status) and PSS
// (/proc/pid/smaps_rollup; 0 for a zombie, which has none).
func readProc(pid int) (proc, error) {
	p := proc{pid: pid}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, fmt.Errorf("read stat of %d: %w", pid, err)
	}
	// comm may hold spaces and parentheses: it ends at the last ')'.
	open, closing := strings.IndexByte(string(stat), '('), strings.LastIndexByte(string(stat), ')')
	if open < 0 || closing < open {
		return p, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	p.comm = string(stat[open+1 : closing])
	if _, err := fmt.Sscanf(string(stat[closing+1:]), " %c %d", &p.state, &p.ppid); err != nil {
		return p, fmt.Errorf("parse /proc/%d/stat: %w", pid, err)
	}
	if p.state == 'Z' {
		return p, nil
	}
	if p.rss, err = kbField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"); err != nil {
		return p, err
	}
	if p.pss, err = kbField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:"); err != nil {
		return p, err
	}
	if p.anon, err = kbField(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Anonymous:"); err != nil {
		return p, err
	}
	return p, nil
}

// kbField returns the "Key:   123 kB" value of a /proc file in bytes; 0 when the key is absent
// (kernel threads have no VmRSS).
func kbField(path, key string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key); ok {
			var v int64
			if _, err := fmt.Sscan(rest, &v); err != nil {
				return 0, fmt.Errorf("parse %s %s: %w", path, key, err)
			}
			return v * 1024, nil
		}
	}
	return 0, nil
}

func report(w io.Writer, o options, subjects []*subject) error {
	fmt.Fprintf(w, "\nknast lifecycle benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", benchutil.Machine())
	fmt.Fprintf(w, "%d rounds per runtime, interleaved, after %d warm-up rounds; bundle: busybox, /bin/true\n",
		o.rounds, o.warmup)
	fmt.Fprintln(w, "exit = from `start` returning until the init is gone (pidfd poll + waitid, same for all)")
	fmt.Fprintln(w, "\ntimes in ms")
	rows := [][]string{{"runtime", "create", "start", "exit", "delete", "total median", "total p90", "n"}}
	for _, s := range subjects {
		if s.skip != "" && len(s.total) == 0 {
			rows = append(rows, []string{s.name, "skipped: " + s.skip})
			continue
		}
		r := []string{s.name}
		for p := range numPhases {
			r = append(r, benchutil.MS(benchutil.Summarize(s.phases[p]).Median))
		}
		t := benchutil.Summarize(s.total)
		r = append(r, benchutil.MS(t.Median), benchutil.MS(t.P90), fmt.Sprint(t.N))
		rows = append(rows, r)
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	for _, s := range subjects {
		if s.skip != "" && len(s.total) > 0 {
			fmt.Fprintf(w, "%s stopped early: %s\n", s.name, s.skip)
		}
	}

	k := benchutil.Summarize(byName(subjects, "knast").total)
	fmt.Fprintln(w, "\nratios (total lifecycle; < 1 means knast is faster)")
	rows = [][]string{{"", "median", "p90"}}
	for _, peer := range []string{"runc", "crun"} {
		p := benchutil.Summarize(byName(subjects, peer).total)
		rows = append(rows, []string{"knast/" + peer,
			benchutil.Ratio(float64(k.Median), float64(p.Median)), benchutil.Ratio(float64(k.P90), float64(p.P90))})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nmemory of one container waiting in \"created\" (median of %d samples, KiB)\n", o.memSamples)
	rows = [][]string{{"runtime", "init RSS", "init PSS", "init anon", "own cgroup", "other processes left running"}}
	var kRSS, kPSS, kAnon int64
	var noCgroup []string
	for _, s := range subjects {
		if len(s.mem) == 0 {
			rows = append(rows, []string{s.name, "-", "-", "-", "-", "not measured"})
			continue
		}
		var rss, pss, anon []int64
		others, cg := "none", "yes"
		for _, m := range s.mem {
			if !m.ownCgroup && cg == "yes" {
				cg = "no"
				noCgroup = append(noCgroup, s.name)
			}
			rss, pss, anon = append(rss, m.rss), append(pss, m.pss), append(anon, m.anon)
			if len(m.others) > 0 {
				var names []string
				for _, p := range m.others {
					names = append(names, fmt.Sprintf("%s (pid %d, RSS %s KiB)", p.comm, p.pid, benchutil.KiB(p.rss)))
				}
				others = strings.Join(names, ", ")
			}
		}
		if s.name == "knast" {
			kRSS, kPSS, kAnon = benchutil.MedianInt(rss), benchutil.MedianInt(pss), benchutil.MedianInt(anon)
		}
		rows = append(rows, []string{s.name, benchutil.KiB(benchutil.MedianInt(rss)), benchutil.KiB(benchutil.MedianInt(pss)),
			benchutil.KiB(benchutil.MedianInt(anon)), cg, others})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	if len(noCgroup) > 0 {
		fmt.Fprintf(w, "note: %s left the init in the benchmark's own cgroups: its times exclude the cgroup setup the others do\n",
			strings.Join(noCgroup, ", "))
	}
	for _, peer := range []string{"runc", "crun"} {
		s := byName(subjects, peer)
		var rss, pss, anon []int64
		for _, m := range s.mem {
			rss, pss, anon = append(rss, m.rss), append(pss, m.pss), append(anon, m.anon)
		}
		fmt.Fprintf(w, "knast/%s: RSS %s, PSS %s, anon %s\n", peer,
			benchutil.Ratio(float64(kRSS), float64(benchutil.MedianInt(rss))), benchutil.Ratio(float64(kPSS), float64(benchutil.MedianInt(pss))),
			benchutil.Ratio(float64(kAnon), float64(benchutil.MedianInt(anon))))
	}
	fmt.Fprintln(w, "\nversions:")
	for _, s := range subjects {
		fmt.Fprintf(w, "  %s: %s %s\n", s.name, s.path, s.version)
	}
	return nil
}
