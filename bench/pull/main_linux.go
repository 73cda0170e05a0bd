//go:build linux

package main

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/moby/sys/mountinfo"

	"github.com/knast/knast/bench/internal/benchutil"
)

const cmdTimeout = 5 * time.Minute

type options struct {
	knast                   string
	rounds, warm            int
	sizeMB, layers          int
	sources                 string
	skopeo, umoci, registry string
	serve                   bool
}

// series are the measured cases, each a list of wall times.
const (
	coldKnast = iota
	coldSkopeoUmoci
	warmKnast
	warmKnastCopy
	warmUmoci
	numSeries
)

var seriesNames = [numSeries]string{
	"cold  knast bundle (pull + unpack into the layer cache + overlay mount)",
	"cold  skopeo copy + umoci unpack",
	"warm  knast bundle (layers cached: overlay mount)",
	"warm  knast bundle --copy (blobs stored: unpack)",
	"warm  umoci unpack (blobs in its layout)",
}

func main() { benchutil.Main("pull", run) }

func run(ctx context.Context, args []string, out io.Writer) (err error) {
	var o options
	fs := flag.NewFlagSet("pull", flag.ContinueOnError)
	fs.StringVar(&o.knast, "knast", "bin/knast", "knast binary")
	fs.IntVar(&o.rounds, "rounds", 3, "cold rounds (each pulls the whole image into empty stores)")
	fs.IntVar(&o.warm, "warm-rounds", 10, "warm rounds")
	fs.IntVar(&o.sizeMB, "size", 128, "MB of host files in the image")
	fs.IntVar(&o.layers, "layers", 4, "number of layers")
	fs.StringVar(&o.sources, "sources", "/usr/bin:/usr/lib/x86_64-linux-gnu:/usr/share:/usr/lib", "host directories the image's files come from, in order")
	fs.StringVar(&o.skopeo, "skopeo", "skopeo", "skopeo binary")
	fs.StringVar(&o.umoci, "umoci", "umoci", "umoci binary")
	fs.StringVar(&o.registry, "registry", "docker-registry", "docker-registry binary")
	fs.BoolVar(&o.serve, "serve", false, "only build and serve the image, print its reference and wait for a signal (for profiling knast by hand)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if o.rounds < 1 || o.warm < 1 || o.sizeMB < 1 || o.layers < 1 {
		return errors.New("need -rounds, -warm-rounds, -size and -layers >= 1")
	}
	if err := benchutil.NeedRoot("knast mounts overlays"); err != nil {
		return err
	}
	for _, b := range []*string{&o.knast, &o.skopeo, &o.umoci, &o.registry} {
		p, err := exec.LookPath(*b)
		if err == nil {
			p, err = filepath.Abs(p)
		}
		if err != nil {
			return fmt.Errorf("%s: %w (Debian packages: skopeo umoci docker-registry; knast: make build)", *b, err)
		}
		*b = p
	}

	tmp, err := os.MkdirTemp("", "knast-bpull-")
	if err != nil {
		return err
	}
	b := &bench{o: o, tmp: tmp}
	defer func() {
		if cerr := b.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	if err := b.startRegistry(ctx); err != nil {
		return err
	}
	fmt.Fprintf(out, "building a %d MB image of %d layers from %s...\n", o.sizeMB, o.layers, o.sources)
	size, err := b.pushImage(ctx)
	if err != nil {
		return err
	}
	if o.serve {
		fmt.Fprintf(out, "serving %s (plain HTTP) until interrupted\n", b.ref)
		<-ctx.Done()
		return nil
	}

	fmt.Fprintf(out, "measuring %d cold rounds...\n", o.rounds)
	for i := range o.rounds {
		if err := b.cold(ctx, i); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "measuring %d warm rounds...\n", o.warm)
	if err := b.prepareWarm(ctx); err != nil {
		return err
	}
	for i := range o.warm {
		if err := b.warmRound(ctx, i); err != nil {
			return err
		}
	}
	return b.report(out, size)
}

type bench struct {
	o     options
	tmp   string
	ref   string
	reg   *exec.Cmd
	times [numSeries][]time.Duration
}

func (b *bench) startRegistry(ctx context.Context) error {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := l.Addr().String()
	l.Close()
	dir := filepath.Join(b.tmp, "registry")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	b.reg = exec.Command(b.o.registry, "serve", cfgPath)
	b.reg.Stdout, b.reg.Stderr = logf, logf
	b.reg.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := b.reg.Start(); err != nil {
		return fmt.Errorf("start docker-registry: %w", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("docker-registry on %s did not answer", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	b.ref = addr + "/bench/hostfiles:1"
	return nil
}

// pushImage builds the layers from host files (regular files, directories, symlinks; each layer
// gets size/layers bytes of file content, in walk order) and pushes the image; it returns the
// compressed size.
func (b *bench) pushImage(ctx context.Context) (int64, error) {
	budget := int64(b.o.sizeMB) << 20 / int64(b.o.layers)
	var layers []v1.Layer
	var cur bytes.Buffer
	var gz *gzip.Writer
	var tw *tar.Writer
	var used int64
	start := func() {
		cur = bytes.Buffer{}
		gz, _ = gzip.NewWriterLevel(&cur, gzip.DefaultCompression)
		tw = tar.NewWriter(gz)
		used = 0
	}
	finish := func() error {
		if err := tw.Close(); err != nil {
			return err
		}
		if err := gz.Close(); err != nil {
			return err
		}
		data := bytes.Clone(cur.Bytes())
		l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return err
		}
		layers = append(layers, l)
		return nil
	}
	start()
	errFull := errors.New("full")
	for _, src := range strings.Split(b.o.sources, ":") {
		err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil // unreadable: skipped
			}
			if len(layers) == b.o.layers {
				return errFull
			}
			info, err := d.Info()
			if err != nil {
				return nil
			}
			hdr, err := tar.FileInfoHeader(info, "")
			if err != nil {
				return nil // sockets and the like
			}
			if info.Mode()&fs.ModeSymlink != 0 {
				if hdr.Linkname, err = os.Readlink(p); err != nil {
					return nil
				}
			} else if !info.Mode().IsRegular() && !info.IsDir() {
				return nil
			}
			hdr.Name = strings.TrimPrefix(p, "/")
			if info.IsDir() {
				hdr.Name += "/"
			}
			hdr.Uname, hdr.Gname = "", ""
			var body []byte
			if info.Mode().IsRegular() {
				if body, err = os.ReadFile(p); err != nil {
					return nil
				}
				hdr.Size = int64(len(body))
			}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			if _, err := tw.Write(body); err != nil {
				return err
			}
			if used += hdr.Size; used >= budget {
				if err := finish(); err != nil {
					return err
				}
				start()
			}
			return nil
		})
		if errors.Is(err, errFull) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("layers from %s: %w", src, err)
		}
	}
	if len(layers) < b.o.layers {
		if err := finish(); err != nil {
			return 0, err
		}
	}
	img, err := mutate.ConfigFile(mutate.MediaType(empty.Image, types.OCIManifestSchema1),
		&v1.ConfigFile{OS: "linux", Architecture: runtime.GOARCH, RootFS: v1.RootFS{Type: "layers"},
			Config: v1.Config{Cmd: []string{"/usr/bin/true"}}})
	if err != nil {
		return 0, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	if img, err = mutate.AppendLayers(img, layers...); err != nil {
		return 0, err
	}
	r, err := name.ParseReference(b.ref, name.Insecure)
	if err != nil {
		return 0, err
	}
	if err := remote.Write(r, img, remote.WithContext(ctx)); err != nil {
		return 0, fmt.Errorf("push %s: %w", b.ref, err)
	}
	var size int64
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
}

// timed runs the commands in order and returns their total wall time.
func timed(ctx context.Context, cmds ...[]string) (time.Duration, error) {
	var total time.Duration
	for _, c := range cmds {
		cctx, cancel := context.WithTimeout(ctx, cmdTimeout)
		cmd := exec.CommandContext(cctx, c[0], c[1:]...)
		var errb bytes.Buffer
		cmd.Stderr = &errb
		t0 := time.Now()
		err := cmd.Run()
		total += time.Since(t0)
		cancel()
		if err != nil {
			return 0, fmt.Errorf("%s: %w\n%s", strings.Join(c, " "), err, errb.String())
		}
	}
	return total, nil
}

func (b *bench) knastArgs(storage string, args ...string) []string {
	return append([]string{b.o.knast, "--root", filepath.Join(b.tmp, "state"), "--storage", storage}, args...)
}

// cold measures both tools from empty stores, in alternating order.
func (b *bench) cold(ctx context.Context, round int) error {
	dir := filepath.Join(b.tmp, fmt.Sprintf("cold-%d", round))
	storage, bundle := filepath.Join(dir, "storage"), filepath.Join(dir, "knast-bundle")
	layout, ubundle := filepath.Join(dir, "layout"), filepath.Join(dir, "umoci-bundle")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	runs := []func() error{
		func() error {
			d, err := timed(ctx, b.knastArgs(storage, "bundle", "--tls-verify=false", b.ref, bundle))
			b.times[coldKnast] = append(b.times[coldKnast], d)
			return err
		},
		func() error {
			d, err := timed(ctx,
				[]string{b.o.skopeo, "copy", "--quiet", "--src-tls-verify=false", "docker://" + b.ref, "oci:" + layout + ":bench"},
				[]string{b.o.umoci, "unpack", "--image", layout + ":bench", ubundle})
			b.times[coldSkopeoUmoci] = append(b.times[coldSkopeoUmoci], d)
			return err
		},
	}
	if round%2 == 1 {
		runs[0], runs[1] = runs[1], runs[0]
	}
	for _, r := range runs {
		if err := r(); err != nil {
			return err
		}
	}
	if err := b.removeBundle(storage, bundle); err != nil {
		return err
	}
	return os.RemoveAll(dir)
}

func (b *bench) warmDir() string { return filepath.Join(b.tmp, "warm") }

// prepareWarm fills a knast store (image and unpacked layers) and a skopeo layout once.
func (b *bench) prepareWarm(ctx context.Context) error {
	w := b.warmDir()
	if err := os.MkdirAll(w, 0o700); err != nil {
		return err
	}
	first := filepath.Join(w, "first")
	if _, err := timed(ctx, b.knastArgs(filepath.Join(w, "storage"), "bundle", "--tls-verify=false", b.ref, first),
		[]string{b.o.skopeo, "copy", "--quiet", "--src-tls-verify=false", "docker://" + b.ref, "oci:" + filepath.Join(w, "layout") + ":bench"}); err != nil {
		return err
	}
	return b.removeBundle(filepath.Join(w, "storage"), first)
}

func (b *bench) warmRound(ctx context.Context, i int) error {
	w := b.warmDir()
	storage := filepath.Join(w, "storage")
	cases := []struct {
		series int
		dir    string
		cmd    []string
	}{
		{warmKnast, filepath.Join(w, fmt.Sprintf("overlay-%d", i)), nil},
		{warmKnastCopy, filepath.Join(w, fmt.Sprintf("copy-%d", i)), nil},
		{warmUmoci, filepath.Join(w, fmt.Sprintf("umoci-%d", i)), nil},
	}
	cases[0].cmd = b.knastArgs(storage, "bundle", b.ref, cases[0].dir)
	cases[1].cmd = b.knastArgs(storage, "bundle", "--copy", b.ref, cases[1].dir)
	cases[2].cmd = []string{b.o.umoci, "unpack", "--image", filepath.Join(w, "layout") + ":bench", cases[2].dir}
	for j := range cases {
		c := cases[(i+j)%len(cases)]
		d, err := timed(ctx, c.cmd)
		if err != nil {
			return err
		}
		b.times[c.series] = append(b.times[c.series], d)
		if c.series == warmUmoci {
			err = os.RemoveAll(c.dir)
		} else {
			err = b.removeBundle(storage, c.dir)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) removeBundle(storage, dir string) error {
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	_, err := timed(context.Background(), b.knastArgs(storage, "bundle", "--rm", dir))
	return err
}

// cleanup stops the registry and removes everything, unmounting what a failed run left mounted.
func (b *bench) cleanup() error {
	if b.reg != nil && b.reg.Process != nil {
		b.reg.Process.Kill()
		b.reg.Wait()
	}
	var errs []error
	if ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(b.tmp)); err == nil {
		for i := len(ms) - 1; i >= 0; i-- {
			if err := syscall.Unmount(ms[i].Mountpoint, syscall.MNT_DETACH); err != nil {
				errs = append(errs, fmt.Errorf("unmount %s: %w", ms[i].Mountpoint, err))
			}
		}
	}
	if err := os.RemoveAll(b.tmp); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (b *bench) report(w io.Writer, size int64) error {
	ctx := context.Background()
	fmt.Fprintf(w, "\nknast pull benchmark, %s\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "machine: %s, load %s\n", benchutil.Machine(), benchutil.LoadAvg())
	fmt.Fprintf(w, "image: %d layers, %d MB of host files, %.1f MB compressed (gzip), from docker-registry on 127.0.0.1\n",
		b.o.layers, b.o.sizeMB, float64(size)/(1<<20))
	fmt.Fprintf(w, "tools: knast %s; %s; umoci %s\n", benchutil.Version(ctx, 10*time.Second, b.o.knast, "--version"),
		benchutil.Version(ctx, 10*time.Second, b.o.skopeo, "--version"), benchutil.Version(ctx, 10*time.Second, b.o.umoci, "--version"))
	fmt.Fprintln(w, "\nwall time in ms (cold: empty stores each round; warm: image already stored)")
	rows := [][]string{{"case", "median", "min", "max", "n"}}
	var med [numSeries]time.Duration
	for i := range numSeries {
		s := benchutil.Summarize(b.times[i])
		med[i] = s.Median
		rows = append(rows, []string{seriesNames[i], benchutil.MS(s.Median), benchutil.MS(s.Min), benchutil.MS(s.Max), fmt.Sprint(s.N)})
	}
	if err := benchutil.Table(w, rows); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nspeed-up of knast (skopeo+umoci time / knast time; > 1 means knast is faster)")
	rows = [][]string{
		{"case", "ratio", "target"},
		{"cold: pull + bundle", benchutil.Ratio(float64(med[coldSkopeoUmoci]), float64(med[coldKnast])), ">= 2x"},
		{"warm: bundle (overlay) vs umoci unpack", benchutil.Ratio(float64(med[warmUmoci]), float64(med[warmKnast])), "knast < 50 ms: " + verdict(med[warmKnast] < 50*time.Millisecond)},
		{"warm: bundle --copy vs umoci unpack", benchutil.Ratio(float64(med[warmUmoci]), float64(med[warmKnastCopy])), "-"},
	}
	return benchutil.Table(w, rows)
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}
