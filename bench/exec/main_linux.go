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
	"runtime"
	"strings"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/bench/internal/benchutil"
	"github.com/knast/knast/internal/spec"
	"github.com/knast/knast/internal/testutil"
)

// cmdTimeout bounds one runtime invocation, so a hung runtime cannot hang the benchmark.
const cmdTimeout = 30 * time.Second

// Variants of the long-running container: the same config without and with a seccomp profile.
const (
	variantPlain = iota
	variantSeccomp
	numVariants
)

var variantNames = [numVariants]string{"plain", "seccomp"}

// wantSeccompMode is the Seccomp: field of /proc/self/status an exec'd process must show per variant
// (0 disabled, 2 filter), checked once so that a runtime ignoring the profile cannot look fast.
var wantSeccompMode = [numVariants]string{"0", "2"}

type options struct {
	rounds, warmup int
	knast, runc    string
}

// subject is one runtime under test with its two containers and their exec times.
type subject struct {
	name    string
	path    string // absolute path of the binary
	root    string // its own --root
	dir     string
	version string
	skip    string // why it is not (or no longer) measured; empty while it is
	errLog  *os.File
	ids     [numVariants]string
	live    map[string]bool // containers that exist and must be deleted on the way out
	times   [numVariants][]time.Duration
}

func main() { benchutil.Main("exec", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("exec", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 50, "measured execs per runtime and variant")
	fs.IntVar(&o.warmup, "warmup", 5, "unmeasured execs per runtime and variant before the first round")
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary")
	fs.StringVar(&o.runc, "runc", "runc", "runc binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.warmup < 0 {
		return errors.New("need -rounds >= 1, -warmup >= 0")
	}
	if err := benchutil.NeedRoot("the runtimes create namespaces and cgroups"); err != nil {
		return err
	}
	// The containers' inits are reparented to us once `create` exits, so we reap them at the end.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}

	tmp, err := os.MkdirTemp("", "knast-bexec-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	token := filepath.Base(tmp)
	cgParent := token
	before, err := testutil.TakeSnapshot(testutil.Scope{Paths: []string{tmp}, Token: token})
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", tmp, rerr)
		}
	}()

	subjects, err := setup(ctx, o, tmp, token, cgParent)
	defer func() {
		// Cleanup must run even after Ctrl-C cancelled ctx.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*cmdTimeout)
		defer cancel()
		var errs []error
		for _, s := range subjects {
			errs = append(errs, s.cleanup(cctx))
		}
		benchutil.ReapOrphans()
		errs = append(errs, checkClean(out, before, cgParent))
		if cerr := errors.Join(errs...); cerr != nil {
			if err == nil {
				err = cerr
			} else {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
			}
		}
	}()
	if err != nil {
		return err
	}

	fmt.Fprintf(out, "warming up (%d execs per runtime and variant)...\n", o.warmup)
	for i := 0; i < o.warmup && ctx.Err() == nil; i++ {
		for _, s := range subjects {
			for v := range numVariants {
				if s.skip != "" {
					continue
				}
				if _, err := s.execTrue(ctx, v); err != nil {
					s.skip = "warm-up: " + err.Error()
				}
			}
		}
	}
	fmt.Fprintf(out, "measuring %d rounds, interleaved...\n", o.rounds)
	for i := 0; i < o.rounds && ctx.Err() == nil; i++ {
		for v := range numVariants {
			// Alternate which runtime goes first, so neither always runs right after the other.
			for j := range subjects {
				s := subjects[(i+j)%len(subjects)]
				if s.skip != "" {
					continue
				}
				d, err := s.execTrue(ctx, v)
				if err != nil {
					s.skip = fmt.Sprintf("round %d: %v", i, err)
					continue
				}
				s.times[v] = append(s.times[v], d)
			}
		}
		benchutil.ReapOrphans()
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if err := report(out, o, subjects); err != nil {
		return err
	}
	if subjects[0].skip != "" {
		return fmt.Errorf("knast was not measured: %s", subjects[0].skip)
	}
	return nil
}

// setup writes one config per variant (`runc spec`'s default, or knast's when runc is missing, with
// `sleep` as the process and the shared read-only busybox rootfs; the seccomp variant adds
// containerd's default profile), then creates and starts both containers of every runtime and checks
// that an exec'd process runs under the variant's seccomp mode. A runtime that fails is skipped.
func setup(ctx context.Context, o options, tmp, token, cgParent string) ([]*subject, error) {
	rootfs := filepath.Join(tmp, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return nil, fmt.Errorf("busybox rootfs (is busybox-static installed?): %w", err)
	}
	subjects := []*subject{{name: "knast", path: o.knast}, {name: "runc", path: o.runc}}
	for _, s := range subjects {
		s.dir = filepath.Join(tmp, s.name)
		s.root = filepath.Join(s.dir, "state")
		s.live = map[string]bool{}
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
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return subjects, fmt.Errorf("%s: %w", s.name, err)
		}
		f, err := os.Create(filepath.Join(s.dir, "stderr"))
		if err != nil {
			return subjects, fmt.Errorf("%s: %w", s.name, err)
		}
		s.errLog = f
	}

	base, err := baseSpec(ctx, subjects, tmp)
	if err != nil {
		return subjects, err
	}
	base.Root.Path = rootfs
	base.Process.Env = append(base.Process.Env, "KNAST_BENCH_TOKEN="+token)

	for _, s := range subjects {
		if s.skip != "" {
			continue
		}
		for v := range numVariants {
			if err := s.startContainer(ctx, v, base, token, cgParent); err != nil {
				s.skip = err.Error()
				break
			}
		}
	}
	return subjects, nil
}

// baseSpec generates the default config with the first available of runc and knast and makes it a
// long-running container without a terminal. ociVersion 1.0.2 is one both runtimes accept.
func baseSpec(ctx context.Context, subjects []*subject, tmp string) (*specs.Spec, error) {
	var gen *subject
	for _, name := range []string{"runc", "knast"} {
		for _, s := range subjects {
			if s.name == name && s.skip == "" && gen == nil {
				gen = s
			}
		}
	}
	if gen == nil {
		return nil, errors.New("neither runc nor knast is available to generate a config")
	}
	s, err := benchutil.RuntimeSpec(ctx, gen.path, filepath.Join(tmp, "spec"))
	if err != nil {
		return nil, err
	}
	s.Version = "1.0.2"
	if s.Process == nil {
		s.Process = &specs.Process{Cwd: "/"}
	}
	s.Process.Terminal = false
	s.Process.Args = []string{"sleep", "1000000"}
	if s.Root == nil {
		s.Root = &specs.Root{}
	}
	s.Root.Readonly = true
	if s.Linux == nil {
		s.Linux = &specs.Linux{}
	}
	s.Linux.Seccomp = nil
	return s, nil
}

// startContainer creates and starts the container of variant v, in a cgroup below cgParent so the
// cleanup can find every cgroup the run made, and checks its seccomp mode from inside.
func (s *subject) startContainer(ctx context.Context, v int, base *specs.Spec, token, cgParent string) error {
	id := fmt.Sprintf("%s-%s-%s", token, s.name, variantNames[v])
	bundle := filepath.Join(s.dir, variantNames[v])
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	cfg := *base
	linux := *base.Linux
	cfg.Linux = &linux
	linux.CgroupsPath = "/" + cgParent + "/" + s.name + "-" + variantNames[v]
	if v == variantSeccomp {
		var caps []string
		if base.Process.Capabilities != nil {
			caps = base.Process.Capabilities.Bounding
		}
		linux.Seccomp = spec.DefaultSeccompFor(runtime.GOARCH, caps)
	}
	if err := testutil.WriteSpec(bundle, &cfg); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	s.live[id] = true
	if _, err := s.run(ctx, "create", "--bundle", bundle, id); err != nil {
		return err
	}
	if _, err := s.run(ctx, "start", id); err != nil {
		return err
	}
	s.ids[v] = id
	status, err := s.run(ctx, "exec", id, "cat", "/proc/self/status")
	if err != nil {
		return err
	}
	mode := "?"
	for _, line := range strings.Split(status, "\n") {
		if rest, ok := strings.CutPrefix(line, "Seccomp:"); ok {
			mode = strings.TrimSpace(rest)
		}
	}
	if mode != wantSeccompMode[v] {
		return fmt.Errorf("%s %s: exec'd process has seccomp mode %s, want %s", s.name, variantNames[v], mode, wantSeccompMode[v])
	}
	return nil
}

// execTrue times `<runtime> exec ID /bin/true` in the container of variant v.
func (s *subject) execTrue(ctx context.Context, v int) (time.Duration, error) {
	t := time.Now()
	_, err := s.run(ctx, "exec", s.ids[v], "/bin/true")
	return time.Since(t), err
}

// run runs `<runtime> --root R args...` and returns its stdout. stdin is /dev/null; stdout goes to a
// file (no pipe a container could inherit and hold open), stderr to a log returned in the error. A
// Ctrl-C does not cut it short (its own process group, a context that only times out), so no runtime
// is killed halfway through a create or exec.
func (s *subject) run(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmdTimeout)
	defer cancel()
	if err := s.errLog.Truncate(0); err != nil {
		return "", fmt.Errorf("truncate stderr log: %w", err)
	}
	if _, err := s.errLog.Seek(0, io.SeekStart); err != nil {
		return "", fmt.Errorf("rewind stderr log: %w", err)
	}
	var stdout *os.File
	if args[0] == "exec" {
		// Only exec prints anything worth reading; create and start would hand the file to the container.
		f, err := os.CreateTemp(s.dir, "stdout-")
		if err != nil {
			return "", fmt.Errorf("stdout file: %w", err)
		}
		defer os.Remove(f.Name())
		defer f.Close()
		stdout = f
	}
	cmd := exec.CommandContext(ctx, s.path, append([]string{"--root", s.root}, args...)...)
	cmd.Stderr = s.errLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if stdout != nil {
		cmd.Stdout = stdout
	}
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(s.errLog.Name())
		return "", fmt.Errorf("%s %s: %w: %s", s.name, args[0], err, strings.TrimSpace(string(msg)))
	}
	if stdout == nil {
		return "", nil
	}
	b, err := os.ReadFile(stdout.Name())
	if err != nil {
		return "", fmt.Errorf("read %s output: %w", args[0], err)
	}
	return string(b), nil
}

// cleanup force-deletes the runtime's containers.
func (s *subject) cleanup(ctx context.Context) error {
	var errs []error
	if s.errLog != nil {
		for id := range s.live {
			if _, err := s.run(ctx, "delete", "--force", id); err != nil {
				errs = append(errs, err)
			}
		}
		s.errLog.Close()
	}
	return errors.Join(errs...)
}

// checkClean removes the benchmark's cgroup parent and fails when a mount, a process or a container
// cgroup outlived the containers' deletion.
func checkClean(out io.Writer, before testutil.Snapshot, cgParent string) error {
	var errs []error
	left, err := benchutil.RemoveCgroups(cgParent)
	if err != nil {
		errs = append(errs, err)
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left after delete (removed now): %s", strings.Join(left, ", ")))
	}
	if leaks := before.WaitLeaks(5 * time.Second); len(leaks) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(leaks, "; ")))
	}
	if len(errs) == 0 {
		fmt.Fprintln(out, "cleanup: containers deleted; no mounts, processes or cgroups left")
	}
	return errors.Join(errs...)
}

func report(w io.Writer, o options, subjects []*subject) error {
	fmt.Fprintf(w, "\nknast exec benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", benchutil.Machine()+", load "+benchutil.LoadAvg())
	fmt.Fprintf(w, "%d execs of /bin/true per runtime and container, interleaved (first runtime alternates), after %d warm-up execs\n",
		o.rounds, o.warmup)
	fmt.Fprintln(w, "one running busybox container (sleep) per runtime and variant; seccomp = containerd's default profile in config.json")
	fmt.Fprintln(w, "\n`RUNTIME exec ID /bin/true`, wall time in ms")
	rows := [][]string{{"runtime", "variant", "median", "p90", "min", "max", "n"}}
	for _, s := range subjects {
		if s.skip != "" && len(s.times[variantPlain]) == 0 {
			rows = append(rows, []string{s.name, "-", "skipped: " + s.skip})
			continue
		}
		for v := range numVariants {
			t := benchutil.Summarize(s.times[v])
			rows = append(rows, []string{s.name, variantNames[v], benchutil.MS(t.Median), benchutil.MS(t.P90), benchutil.MS(t.Min), benchutil.MS(t.Max), fmt.Sprint(t.N)})
		}
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	for _, s := range subjects {
		if s.skip != "" && len(s.times[variantPlain]) > 0 {
			fmt.Fprintf(w, "%s stopped early: %s\n", s.name, s.skip)
		}
	}

	k, r := subjects[0], subjects[1]
	fmt.Fprintln(w, "\nknast/runc (< 1 means knast is faster)")
	rows = [][]string{{"variant", "median", "p90", "median diff ms"}}
	for v := range numVariants {
		ks, rs := benchutil.Summarize(k.times[v]), benchutil.Summarize(r.times[v])
		rows = append(rows, []string{variantNames[v], benchutil.Ratio(float64(ks.Median), float64(rs.Median)),
			benchutil.Ratio(float64(ks.P90), float64(rs.P90)), benchutil.Delta(ks.Median, rs.Median)})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\ncost of the seccomp profile per exec (seccomp median - plain median, ms)")
	rows = [][]string{{"runtime", "extra ms"}}
	for _, s := range subjects {
		rows = append(rows, []string{s.name, benchutil.Delta(benchutil.Summarize(s.times[variantSeccomp]).Median, benchutil.Summarize(s.times[variantPlain]).Median)})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nversions:")
	for _, s := range subjects {
		fmt.Fprintf(w, "  %s: %s %s\n", s.name, s.path, s.version)
	}
	return nil
}
