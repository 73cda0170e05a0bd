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
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/bench/internal/benchutil"
	"github.com/knast/knast/internal/testutil"
)

// cmdTimeout bounds one build, so a hung builder cannot hang the benchmark.
const cmdTimeout = 5 * time.Minute

const baseImage = "localhost/knast-bench-busybox:latest"

// dockerfiles are the builds measured: the integration suite's set and one with many files.
func dockerfiles() []struct {
	name  string
	files map[string]string
} {
	many := map[string]string{
		"Dockerfile": "FROM " + baseImage + "\nCOPY src /src\nRUN mkdir /gen && cd /gen && for i in $(seq 1 2000); do echo $i > f$i; done\nRUN rm -rf /src/d3 && chown -R 1000:1000 /src\n",
	}
	for d := 0; d < 10; d++ {
		for f := 0; f < 50; f++ {
			many[fmt.Sprintf("src/d%d/f%d.txt", d, f)] = strings.Repeat(fmt.Sprintf("%d-%d\n", d, f), 200)
		}
	}
	return []struct {
		name  string
		files map[string]string
	}{
		{"multi-stage", map[string]string{"Dockerfile": "FROM " + baseImage + " AS builder\nRUN mkdir -p /out/bin && echo compiled > /out/bin/app && chmod 755 /out/bin/app\nFROM " + baseImage + " AS second\nRUN echo second > /second.txt\nFROM " + baseImage + "\nCOPY --from=builder /out/bin /usr/local/bin/\nCOPY --from=1 /second.txt /from-index.txt\nENTRYPOINT [\"/usr/local/bin/app\"]\n"}},
		{"arg-env", map[string]string{"Dockerfile": "ARG BASE=" + baseImage + "\nFROM $BASE\nARG VERSION=1.0\nENV APP_HOME=/srv/app APP_VERSION=${VERSION}\nWORKDIR $APP_HOME\nRUN echo \"$APP_VERSION\" > version.txt\nLABEL version=$VERSION\nEXPOSE 8080\nUSER 1000\n"}},
		{"chown-chmod", map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN echo 'app:x:1234:2345::/home/app:/bin/sh' >> /etc/passwd && echo 'appgrp:x:2345:' >> /etc/group\nCOPY --chown=app:appgrp conf.txt /etc/app/conf.txt\nCOPY --chown=1000:1000 --chmod=0750 bin/ /opt/bin/\n", "conf.txt": "conf\n", "bin/tool": "#!/bin/sh\n", "bin/sub/helper": "h\n"}},
		{"deletions", map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN mkdir -p /var/lib/thing && echo x > /var/lib/thing/f\nRUN rm -rf /var/lib/thing /etc/group\n"}},
		{"workdir-symlink", map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN mkdir -p /real && ln -s /real /link\nWORKDIR /link/sub\nCOPY file.txt .\n", "file.txt": "f\n"}},
		{"dockerignore", map[string]string{"Dockerfile": "FROM " + baseImage + "\nCOPY . /ctx/\n", ".dockerignore": "*.secret\ntmp/\n", "a.txt": "a\n", "b.secret": "s\n", "tmp/x": "x\n"}},
		{"scratch", map[string]string{"Dockerfile": "FROM scratch\nCOPY hello.txt /\nCMD [\"/hello\"]\n", "hello.txt": "hello\n"}},
		{"many-files", many},
	}
}

type options struct {
	rounds         int
	knast, buildah string
}

// subject is one builder with its timings per Dockerfile and mode.
type subject struct {
	name    string
	version string
	cold    map[string][]time.Duration
	cached  map[string][]time.Duration
}

func main() { benchutil.Main("build", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("build", flag.ContinueOnError)
	fs.IntVar(&o.rounds, "rounds", 5, "measured builds per builder, Dockerfile and mode")
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary")
	fs.StringVar(&o.buildah, "buildah", "buildah", "buildah binary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 {
		return errors.New("need -rounds >= 1")
	}
	if err := benchutil.NeedRoot("the builders mount overlays and run containers"); err != nil {
		return err
	}
	if o.knast, err = filepath.Abs(o.knast); err != nil {
		return err
	}
	if _, err := os.Stat(o.knast); err != nil {
		return fmt.Errorf("knast binary: %w (run `make build` first)", err)
	}
	if _, err := exec.LookPath(o.buildah); err != nil {
		return fmt.Errorf("buildah: %w (apt-get install -y buildah)", err)
	}
	tmp, err := os.MkdirTemp("", "knast-bbuild-")
	if err != nil {
		return fmt.Errorf("temp dir: %w", err)
	}
	b := &bench{o: o, tmp: tmp}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmdTimeout)
		defer cancel()
		if cerr := b.cleanup(cctx); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := b.setup(ctx); err != nil {
		return err
	}
	k := &subject{name: "knast", version: benchutil.Version(ctx, 10*time.Second, o.knast, "--version"), cold: map[string][]time.Duration{}, cached: map[string][]time.Duration{}}
	bh := &subject{name: "buildah", version: benchutil.Version(ctx, 10*time.Second, o.buildah, "--version"), cold: map[string][]time.Duration{}, cached: map[string][]time.Duration{}}
	dfs := dockerfiles()
	fmt.Fprintf(out, "warming up (one build of each Dockerfile per builder and mode)...\n")
	for _, df := range dfs {
		dir := b.contexts[df.name]
		for _, step := range [][]string{
			b.knastArgs(df.name, dir, true), b.knastArgs(df.name, dir, false),
			b.buildahArgs(df.name, dir, true), b.buildahArgs(df.name, dir, false),
		} {
			if _, err := b.timed(ctx, step); err != nil {
				return fmt.Errorf("warm-up %s: %w", df.name, err)
			}
		}
	}
	fmt.Fprintf(out, "measuring %d rounds, interleaved...\n", o.rounds)
	for i := 0; i < o.rounds; i++ {
		for _, df := range dfs {
			dir := b.contexts[df.name]
			// Alternate which builder goes first, so neither always follows the other.
			order := []*subject{k, bh}
			if i%2 == 1 {
				order = []*subject{bh, k}
			}
			for _, s := range order {
				for _, cold := range []bool{true, false} {
					argv := b.knastArgs(df.name, dir, cold)
					if s == bh {
						argv = b.buildahArgs(df.name, dir, cold)
					}
					d, err := b.timed(ctx, argv)
					if err != nil {
						return fmt.Errorf("%s %s: %w", s.name, df.name, err)
					}
					if cold {
						s.cold[df.name] = append(s.cold[df.name], d)
					} else {
						s.cached[df.name] = append(s.cached[df.name], d)
					}
				}
			}
		}
	}
	return report(out, o, dfs, k, bh)
}

type bench struct {
	o        options
	tmp      string
	storage  string
	state    string
	bstore   string
	contexts map[string]string
}

func (b *bench) setup(ctx context.Context) error {
	b.storage = filepath.Join(b.tmp, "knast-storage")
	b.state = filepath.Join(b.tmp, "knast-state")
	b.bstore = filepath.Join(b.tmp, "buildah")
	rootfs := filepath.Join(b.tmp, "rootfs")
	if err := testutil.BusyboxRootfs(rootfs); err != nil {
		return fmt.Errorf("busybox rootfs (is busybox-static installed?): %w", err)
	}
	archive := filepath.Join(b.tmp, "base.tar")
	f, err := os.Create(archive)
	if err != nil {
		return err
	}
	err = testutil.WriteOCIArchive(f, rootfs, testutil.ImageConfig{Name: baseImage, Cmd: []string{"sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("base image: %w", err)
	}
	if _, err := b.timed(ctx, []string{b.o.knast, "--storage", b.storage, "image", "load", "-i", archive}); err != nil {
		return err
	}
	if _, err := b.timed(ctx, b.buildahCmd("pull", "-q", "oci-archive:"+archive)); err != nil {
		return err
	}
	b.contexts = map[string]string{}
	for _, df := range dockerfiles() {
		dir := filepath.Join(b.tmp, "ctx", df.name)
		for p, c := range df.files {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				return err
			}
		}
		b.contexts[df.name] = dir
	}
	return nil
}

// buildahCmd is buildah on the benchmark's own storage, with its fastest driver (overlay) and
// runc (crun refuses hybrid cgroup hosts).
func (b *bench) buildahCmd(args ...string) []string {
	return append([]string{b.o.buildah, "--root", filepath.Join(b.bstore, "root"), "--runroot", filepath.Join(b.bstore, "run"), "--storage-driver", "overlay"}, args...)
}

func (b *bench) knastArgs(name, dir string, cold bool) []string {
	argv := []string{b.o.knast, "--storage", b.storage, "--root", b.state, "build", "-q", "-t", "localhost/bench-" + name}
	if cold {
		argv = append(argv, "--no-cache")
	}
	return append(argv, dir)
}

func (b *bench) buildahArgs(name, dir string, cold bool) []string {
	args := []string{"bud", "--runtime", "runc", "-q", "-t", "localhost/bench-" + name}
	if !cold {
		args = append(args, "--layers")
	}
	return b.buildahCmd(append(args, dir)...)
}

// timed runs argv and returns its wall time.
func (b *bench) timed(ctx context.Context, argv []string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	t0 := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("%s: %w\n%s", strings.Join(argv, " "), err, out)
	}
	return d, nil
}

func (b *bench) cleanup(ctx context.Context) error {
	var errs []error
	if _, err := b.timed(ctx, b.buildahCmd("rmi", "--all", "--force")); err != nil {
		errs = append(errs, err)
	}
	unmountBelow(b.tmp)
	benchutil.ReapOrphans()
	if err := os.RemoveAll(b.tmp); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", b.tmp, err))
	}
	return errors.Join(errs...)
}

// unmountBelow detaches what buildah's overlay driver left mounted under dir.
func unmountBelow(dir string) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return
	}
	var mps []string
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			mps = append(mps, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	for _, mp := range mps {
		unix.Unmount(mp, unix.MNT_DETACH)
	}
}

func report(out io.Writer, o options, dfs []struct {
	name  string
	files map[string]string
}, k, bh *subject) error {
	fmt.Fprintf(out, "\n%s\nload %s\nknast: %s\nbuildah: %s\n%d rounds; cold = knast --no-cache vs buildah bud; cached = rebuild, knast vs buildah bud --layers\n\n",
		benchutil.Machine(), benchutil.LoadAvg(), k.version, bh.version, o.rounds)
	rows := [][]string{{"dockerfile", "knast cold ms", "buildah cold ms", "ratio", "knast cached ms", "buildah cached ms", "ratio"}}
	var kc, bc, kk, bk time.Duration
	for _, df := range dfs {
		a, b := benchutil.Summarize(k.cold[df.name]).Median, benchutil.Summarize(bh.cold[df.name]).Median
		c, d := benchutil.Summarize(k.cached[df.name]).Median, benchutil.Summarize(bh.cached[df.name]).Median
		kc, bc, kk, bk = kc+a, bc+b, kk+c, bk+d
		rows = append(rows, []string{df.name, benchutil.MS(a), benchutil.MS(b), benchutil.Ratio(float64(a), float64(b)), benchutil.MS(c), benchutil.MS(d), benchutil.Ratio(float64(c), float64(d))})
	}
	rows = append(rows, []string{"all (sum of medians)", benchutil.MS(kc), benchutil.MS(bc), benchutil.Ratio(float64(kc), float64(bc)), benchutil.MS(kk), benchutil.MS(bk), benchutil.Ratio(float64(kk), float64(bk))})
	if err := benchutil.Table(out, rows); err != nil {
		return err
	}
	fmt.Fprintf(out, "\ntarget: knast <= 0.50x buildah; cold %s, cached %s\n", benchutil.Ratio(float64(kc), float64(bc)), benchutil.Ratio(float64(kk), float64(bk)))
	return nil
}
