//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/bench/internal/benchutil"
	"github.com/knast/knast/internal/testutil"
)

// cmdTimeout bounds one ctr invocation, so a hung shim or runtime cannot hang the benchmark.
const cmdTimeout = 60 * time.Second

// image is the reference the busybox image is imported under.
const image = "localhost/busybox:latest"

type options struct {
	rounds, warmup int
	knast, runc    string
}

// subject is one runtime under test, driven by containerd's runc shim through `ctr run --runc-binary`.
type subject struct {
	name    string
	path    string // absolute path of the binary
	root    string // its own --runc-root
	version string
	skip    string // why it is not (or no longer) measured; empty while it is
	times   []time.Duration
}

// daemon is the private containerd: everything under dir, its own namespace.
type daemon struct {
	dir, sock, ns, logPath string
	cmd                    *exec.Cmd
	exited                 chan error
	errLog                 *os.File
	ids                    []string // every container ID run, to find its shim's socket
}

// shimSocketDir is where containerd 1.6's shims put their sockets, whatever containerd's state dir.
const shimSocketDir = "/run/containerd/s"

func main() { benchutil.Main("ctr", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("ctr", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 30, "measured `ctr run --rm` per runtime")
	fs.IntVar(&o.warmup, "warmup", 3, "unmeasured runs per runtime before the first round")
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary")
	fs.StringVar(&o.runc, "runc", "/usr/sbin/runc", "runc binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.warmup < 0 {
		return errors.New("need -rounds >= 1, -warmup >= 0")
	}
	if err := benchutil.NeedRoot("containerd and the runtimes create mounts, namespaces and cgroups"); err != nil {
		return err
	}
	for _, tool := range []string{"containerd", "ctr", "containerd-shim-runc-v2"} {
		if _, err := exec.LookPath(tool); err != nil {
			// Like a missing runtime in bench/lifecycle: reported, not a failure of `make bench`.
			fmt.Fprintf(out, "ctr benchmark skipped: %s is not installed (apt-get install containerd): %v\n", tool, err)
			return nil
		}
	}

	// Not under a deep dir: the unix socket path must stay short.
	tmp, err := os.MkdirTemp("", "knast-bctr-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	token := filepath.Base(tmp)
	before, err := testutil.TakeSnapshot(testutil.Scope{Paths: []string{tmp}, Token: token})
	if err != nil {
		os.RemoveAll(tmp)
		return err
	}
	d := &daemon{
		dir:     tmp,
		sock:    filepath.Join(tmp, "containerd.sock"),
		ns:      token, // also the parent cgroup ctr gives every container: /<ns>/<id>
		logPath: filepath.Join(tmp, "containerd.log"),
	}
	defer func() {
		// Cleanup must run even after Ctrl-C cancelled ctx.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*cmdTimeout)
		defer cancel()
		if cerr := d.stop(cctx, out, before); cerr != nil {
			if err == nil {
				err = cerr
			} else {
				err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
			}
		}
	}()
	if err := d.start(ctx); err != nil {
		return err
	}
	if err := d.importImage(ctx); err != nil {
		return err
	}

	subjects := []*subject{{name: "knast", path: o.knast}, {name: "runc", path: o.runc}}
	for _, s := range subjects {
		s.root = filepath.Join(tmp, "runtime-root-"+s.name)
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

	fmt.Fprintf(out, "warming up (%d runs per runtime)...\n", o.warmup)
	for i := 0; i < o.warmup && ctx.Err() == nil; i++ {
		for _, s := range subjects {
			if s.skip != "" {
				continue
			}
			if _, err := d.runTrue(ctx, s, fmt.Sprintf("%s-w%d", s.name, i)); err != nil {
				s.skip = "warm-up: " + err.Error()
			}
		}
	}
	fmt.Fprintf(out, "measuring %d rounds, interleaved...\n", o.rounds)
	for i := 0; i < o.rounds && ctx.Err() == nil; i++ {
		// Alternate which runtime goes first, so neither always runs right after the other.
		for j := range subjects {
			s := subjects[(i+j)%len(subjects)]
			if s.skip != "" {
				continue
			}
			t, err := d.runTrue(ctx, s, fmt.Sprintf("%s-r%d", s.name, i))
			if err != nil {
				s.skip = fmt.Sprintf("round %d: %v", i, err)
				continue
			}
			s.times = append(s.times, t)
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("interrupted: %w", err)
	}
	if err := report(ctx, out, o, subjects); err != nil {
		return err
	}
	if subjects[0].skip != "" {
		return fmt.Errorf("knast was not measured: %s", subjects[0].skip)
	}
	return nil
}

// start writes a private config (root, state, sockets and plugin dirs under d.dir; no CRI, no
// snapshotters this host cannot have) and starts containerd in its own process group, so a Ctrl-C does
// not reach it before the cleanup runs.
func (d *daemon) start(ctx context.Context) error {
	config := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = %[3]q

[ttrpc]
  address = %[4]q

[debug]
  address = %[5]q

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
`, filepath.Join(d.dir, "root"), filepath.Join(d.dir, "state"), d.sock, d.sock+".ttrpc",
		filepath.Join(d.dir, "debug.sock"), filepath.Join(d.dir, "opt"))
	cfgPath := filepath.Join(d.dir, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return fmt.Errorf("containerd config: %w", err)
	}
	f, err := os.Create(filepath.Join(d.dir, "ctr.stderr"))
	if err != nil {
		return fmt.Errorf("ctr stderr log: %w", err)
	}
	d.errLog = f
	logF, err := os.Create(d.logPath)
	if err != nil {
		return fmt.Errorf("containerd log: %w", err)
	}
	defer logF.Close()
	d.cmd = exec.Command("containerd", "--config", cfgPath)
	d.cmd.Stdout, d.cmd.Stderr = logF, logF
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		d.cmd = nil
		return fmt.Errorf("start containerd: %w", err)
	}
	d.exited = make(chan error, 1)
	go func() { d.exited <- d.cmd.Wait() }()

	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case err := <-d.exited:
			d.exited <- err
			return fmt.Errorf("containerd exited at startup: %v\n%s", err, d.logTail())
		default:
		}
		err := d.ctr(ctx, "version")
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("containerd did not come up: %w\n%s", err, d.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// importImage imports a busybox-static image built here (an OCI archive with one layer), unpacked
// for the default snapshotter so that no run pays for the unpacking.
func (d *daemon) importImage(ctx context.Context) error {
	rootfs := filepath.Join(d.dir, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return fmt.Errorf("busybox rootfs (is busybox-static installed?): %w", err)
	}
	archive := filepath.Join(d.dir, "busybox-oci.tar")
	f, err := os.Create(archive)
	if err != nil {
		return fmt.Errorf("image archive: %w", err)
	}
	err = testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{
		Name: image,
		Env:  []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"},
		Cmd:  []string{"/bin/sh"},
	})
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("image archive: %w", cerr)
	}
	if err != nil {
		return err
	}
	if err := d.ctr(ctx, "images", "import", archive); err != nil {
		return fmt.Errorf("import image: %w", err)
	}
	return nil
}

// runTrue times `ctr run --rm --runc-binary RUNTIME --runc-root ROOT IMAGE ID /bin/true`: snapshot,
// container, shim, the runtime's create/start/delete, and the removal of container and snapshot.
func (d *daemon) runTrue(ctx context.Context, s *subject, id string) (time.Duration, error) {
	d.ids = append(d.ids, id)
	t := time.Now()
	err := d.ctr(ctx, "run", "--rm", "--fifo-dir", filepath.Join(d.dir, "fifo"), "--runc-binary", s.path, "--runc-root", s.root, image, id, "/bin/true")
	el := time.Since(t)
	if err != nil {
		return el, fmt.Errorf("%s: %w%s", s.name, err, d.logTail())
	}
	return el, nil
}

// ctr runs `ctr --address S --namespace N args...` with stdin and stdout on /dev/null and stderr in a
// file, returned in the error. A Ctrl-C does not cut it short (its own process group, a context that
// only times out): a ctr killed mid-run leaves a half-created task, shim and fifos behind.
func (d *daemon) ctr(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmdTimeout)
	defer cancel()
	if err := d.errLog.Truncate(0); err != nil {
		return fmt.Errorf("truncate stderr log: %w", err)
	}
	if _, err := d.errLog.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("rewind stderr log: %w", err)
	}
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", d.sock, "--namespace", d.ns}, args...)...)
	cmd.Stderr = d.errLog
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		msg, _ := os.ReadFile(d.errLog.Name())
		return fmt.Errorf("ctr %s: %w: %s", args[0], err, strings.TrimSpace(string(msg)))
	}
	return nil
}

// ctrOutput is ctr with stdout returned (for listings).
func (d *daemon) ctrOutput(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	b, err := exec.CommandContext(ctx, "ctr", append([]string{"--address", d.sock, "--namespace", d.ns}, args...)...).Output()
	if err != nil {
		return "", fmt.Errorf("ctr %s: %w", args[0], err)
	}
	return string(b), nil
}

// logTail is the last error lines of containerd's log (which carry the shim's and runtime's errors).
func (d *daemon) logTail() string {
	data, _ := os.ReadFile(d.logPath)
	var keep []string
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if strings.Contains(l, "level=error") {
			keep = append(keep, l)
		}
	}
	if len(keep) == 0 {
		return ""
	}
	if len(keep) > 5 {
		keep = keep[len(keep)-5:]
	}
	return "\ncontainerd log (errors):\n" + strings.Join(keep, "\n")
}

// stop removes every container a failed run left (their shims exit with their tasks), stops
// containerd, then checks that no process, mount or cgroup of the run is left: whatever is, is
// removed (processes killed by pid) and reported as an error.
func (d *daemon) stop(ctx context.Context, out io.Writer, before testutil.Snapshot) error {
	var errs []error
	if d.cmd != nil {
		if err := d.removeContainers(ctx); err != nil {
			errs = append(errs, err)
		}
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	if d.errLog != nil {
		d.errLog.Close()
	}
	if leaks := before.WaitLeaks(5 * time.Second); len(leaks) > 0 {
		errs = append(errs, fmt.Errorf("left behind: %s", strings.Join(leaks, "; ")))
		// Only processes naming this run's dir: its shims and what they started.
		if after, err := testutil.TakeSnapshot(before.Scope); err == nil {
			for _, p := range after.Procs {
				unix.Kill(p.Pid, unix.SIGKILL)
			}
		}
		// Their cgroups can go once they are gone.
		before.WaitLeaks(5 * time.Second)
	}
	mounts, err := testutil.MountsUnder(d.dir)
	if err != nil {
		errs = append(errs, err)
	}
	for i := len(mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounts[i], unix.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", mounts[i], err))
		}
	}
	// A shim whose ctr was killed mid-run (Ctrl-C) can exit without removing its socket.
	var stale []string
	for _, id := range d.ids {
		p := shimSocket(d.sock, d.ns, id)
		if err := os.Remove(p); err == nil {
			stale = append(stale, id)
		} else if !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("remove shim socket of %s: %w", id, err))
		}
	}
	if len(stale) > 0 {
		fmt.Fprintf(out, "cleanup: removed the stale shim sockets of %s\n", strings.Join(stale, ", "))
	}
	left, err := benchutil.RemoveCgroups(d.ns)
	if err != nil {
		errs = append(errs, err)
	}
	if len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left after the containers were removed (removed now): %s", strings.Join(left, ", ")))
	}
	if err := os.RemoveAll(d.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", d.dir, err))
	}
	if len(errs) == 0 && d.cmd != nil {
		fmt.Fprintln(out, "cleanup: containerd stopped; no containers, shims, mounts or cgroups left")
	}
	return errors.Join(errs...)
}

// shimSocket is the socket path containerd 1.6's runc shim derives from containerd's address, the
// namespace and the container ID.
func shimSocket(address, ns, id string) string {
	sum := sha256.Sum256([]byte(filepath.Join(address, ns, id)))
	return filepath.Join(shimSocketDir, hex.EncodeToString(sum[:]))
}

// removeContainers removes every container of the namespace with its task, retrying for a while:
// a container whose task is still being created cannot be removed yet.
func (d *daemon) removeContainers(ctx context.Context) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		ids, err := d.ctrOutput(ctx, "containers", "ls", "-q")
		if err != nil {
			return err
		}
		if strings.TrimSpace(ids) == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("containers not removable: %s", strings.Join(strings.Fields(ids), ", "))
		}
		for _, id := range strings.Fields(ids) {
			d.ctr(ctx, "task", "kill", "-s", "SIGKILL", id)
			d.ctr(ctx, "task", "rm", "-f", id)
			d.ctr(ctx, "containers", "rm", id)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func report(ctx context.Context, w io.Writer, o options, subjects []*subject) error {
	fmt.Fprintf(w, "\nknast under containerd benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s\n", benchutil.Machine()+", load "+benchutil.LoadAvg())
	fmt.Fprintf(w, "%d runs per runtime, interleaved (first runtime alternates), after %d warm-up runs per runtime\n",
		o.rounds, o.warmup)
	fmt.Fprintf(w, "`ctr run --rm --runc-binary RUNTIME %s ID /bin/true` against a private containerd (overlayfs, runc v2 shim)\n", image)
	fmt.Fprintln(w, "\nwall time of ctr run in ms")
	rows := [][]string{{"runtime", "median", "p90", "min", "max", "n"}}
	for _, s := range subjects {
		if s.skip != "" && len(s.times) == 0 {
			rows = append(rows, []string{s.name, "skipped: " + s.skip})
			continue
		}
		t := benchutil.Summarize(s.times)
		rows = append(rows, []string{s.name, benchutil.MS(t.Median), benchutil.MS(t.P90), benchutil.MS(t.Min), benchutil.MS(t.Max), fmt.Sprint(t.N)})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	for _, s := range subjects {
		if s.skip != "" && len(s.times) > 0 {
			fmt.Fprintf(w, "%s stopped early: %s\n", s.name, s.skip)
		}
	}
	k, r := benchutil.Summarize(subjects[0].times), benchutil.Summarize(subjects[1].times)
	fmt.Fprintln(w, "\nknast/runc (< 1 means knast is faster; containerd's own work is in both)")
	rows = [][]string{
		{"", "median", "p90", "median diff ms"},
		{"knast/runc", benchutil.Ratio(float64(k.Median), float64(r.Median)), benchutil.Ratio(float64(k.P90), float64(r.P90)), benchutil.Delta(k.Median, r.Median)},
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nversions:")
	fmt.Fprintf(w, "  containerd: %s\n", benchutil.Version(ctx, cmdTimeout, "containerd", "--version"))
	for _, s := range subjects {
		fmt.Fprintf(w, "  %s: %s %s\n", s.name, s.path, s.version)
	}
	return nil
}
