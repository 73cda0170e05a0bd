package build

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/image"
	"github.com/knast/knast/internal/image/unpack"
	"github.com/knast/knast/internal/spec"
)

// builder is one build in progress.
type builder struct {
	o       Options
	out     io.Writer
	log     *slog.Logger
	df      *dockerfile
	context *srcTree
	st      *image.Store
	mgr     *container.Manager
	lock    *os.File // held while the build runs (sweep_linux.go)
	// cacheLock is the build cache's lock, held shared while the build runs (prune.go).
	cacheLock *os.File
	cache     stepCache
	dir       string // STORAGE/build
	tmp       string // STORAGE/build/tmp/ID, removed at the end
	id        string
	platform  image.Platform
	meta      *vars
	used      map[string]bool
	steps     int
	step      int
	stages    map[int]*stage
	mounts    []string // read-only roots of stages and images used by --from
	images    map[string]*stage
	result    Result
	seq       int
	// jobs are the layer blobs being written in the background, by step key; entries are the
	// cache entries of this build, written once the layers are safely on disk.
	jobs    map[string]*layerRef
	entries map[string]*layerRef
	slots   chan struct{}
	epoch   time.Time
}

// stage is the state of one build stage (or of an image COPY --from reads).
type stage struct {
	idx    int
	name   string
	img    dockerspec.DockerOCIImage
	lowers []string    // layer directories, lowest first
	layers []*layerRef // the image's layers, lowest first (img.RootFS.DiffIDs is filled at commit)
	key    string      // cache key of everything so far
	args   *vars       // ARGs declared in the stage
	cmdSet bool        // CMD was set in this stage (ENTRYPOINT then keeps it)
	root   string      // read-only mount of the finished rootfs, for COPY --from
}

// Build builds the Dockerfile of o and stores the image.
func Build(ctx context.Context, o Options) (res *Result, err error) {
	b, err := newBuilder(o)
	if err != nil {
		return nil, err
	}
	defer b.cleanup()
	res, err = b.run(ctx)
	if ferr := b.finish(); err == nil && ferr != nil {
		err = ferr
	}
	if err != nil {
		return nil, err
	}
	return res, nil
}

func newBuilder(o Options) (*builder, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch o.Network {
	case "":
		o.Network = NetworkHost
	case NetworkHost, NetworkNone:
	default:
		if o.Networker == nil || len(o.RunAnnotations) == 0 {
			return nil, fmt.Errorf("--network %s: a knast network needs a Networker (only %s and %s without one)", o.Network, NetworkHost, NetworkNone)
		}
	}
	tree, err := openContext(o.ContextDir)
	if err != nil {
		return nil, err
	}
	dfPath := o.Dockerfile
	if dfPath == "" {
		dfPath = filepath.Join(tree.root, "Dockerfile")
	}
	data, err := os.ReadFile(dfPath)
	if err != nil {
		return nil, fmt.Errorf("dockerfile: %w", err)
	}
	df, err := parseDockerfile(filepath.Base(dfPath), data)
	if err != nil {
		return nil, err
	}
	plat := image.HostPlatform()
	if o.Platform != "" {
		if plat, err = image.ParsePlatform(o.Platform); err != nil {
			return nil, err
		}
	}
	st, err := image.Open(o.StorageDir, o.Log)
	if err != nil {
		return nil, err
	}
	var rnd [6]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("build id: %w", err)
	}
	b := &builder{
		o: o, out: o.Out, log: o.Log, df: df, context: tree, st: st,
		mgr: container.New(o.StateRoot, o.Log), dir: filepath.Join(o.StorageDir, "build"),
		id: hex.EncodeToString(rnd[:]), platform: plat, used: map[string]bool{},
		stages: map[int]*stage{}, images: map[string]*stage{},
		jobs: map[string]*layerRef{}, entries: map[string]*layerRef{}, slots: make(chan struct{}, 2),
	}
	if o.Networker != nil {
		b.mgr.SetNetworker(o.Networker)
	}
	b.cache = stepCache{dir: b.dir}
	if err := os.MkdirAll(b.dir, 0o700); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if b.cacheLock, err = lockCache(b.dir, unix.LOCK_SH); err != nil {
		return nil, err
	}
	// Layer directories replaced by earlier --no-cache builds; whatever is left when the process
	// exits is swept by the next build.
	go b.cache.sweep()
	tmpRoot := filepath.Join(b.dir, "tmp")
	b.tmp = filepath.Join(tmpRoot, b.id)
	for _, d := range []string{b.tmp, filepath.Join(b.dir, "empty"), filepath.Join(b.dir, "layers"), filepath.Join(b.dir, "base")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("build: %w", err)
		}
	}
	if b.lock, err = lockBuild(tmpRoot, b.id); err != nil {
		return nil, err
	}
	b.sweepDeadBuilds(context.Background(), tmpRoot)
	st.SweepWrites() // layer blobs a killed build was writing
	// The lower of scratch stages: its mode is the mode of their "/".
	if err := os.Chmod(filepath.Join(b.dir, "empty"), 0o755); err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	if v, ok := o.BuildArgs["SOURCE_DATE_EPOCH"]; ok {
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil || sec < 0 {
			return nil, fmt.Errorf("--build-arg SOURCE_DATE_EPOCH=%s: not a count of seconds", v)
		}
		b.epoch = time.Unix(sec, 0).UTC()
		b.used["SOURCE_DATE_EPOCH"] = true
	}
	return b, nil
}

func (b *builder) cleanup() {
	for i := len(b.mounts) - 1; i >= 0; i-- {
		if err := unmount(b.mounts[i]); err != nil {
			b.log.Warn("build cleanup", "err", err)
		}
	}
	os.RemoveAll(b.tmp)
	if b.lock != nil {
		os.Remove(b.lock.Name())
		b.lock.Close()
	}
	if b.cacheLock != nil {
		b.cacheLock.Close()
	}
}

func (b *builder) printf(format string, args ...any) { fmt.Fprintf(b.out, format, args...) }

func (b *builder) run(ctx context.Context) (*Result, error) {
	t0 := time.Now()
	var err error
	hostPlat := image.HostPlatform()
	target := platformArgs{b.platform.OS, b.platform.Architecture, b.platform.Variant}
	if b.meta, err = b.df.evalMetaArgs(b.o.BuildArgs, b.used, target, platformArgs{hostPlat.OS, hostPlat.Architecture, hostPlat.Variant}); err != nil {
		return nil, err
	}
	order, steps, err := b.df.plan(b.o.Target, b.meta)
	if err != nil {
		return nil, err
	}
	b.steps = steps
	unhold, err := b.st.HoldBlobs(ctx)
	if err != nil {
		return nil, err
	}
	defer unhold()
	var last *stage
	for _, i := range order {
		if last, err = b.buildStage(ctx, i); err != nil {
			return nil, err
		}
		b.stages[i] = last
	}
	var unused []string
	for k := range b.o.BuildArgs {
		if !b.used[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		sort.Strings(unused)
		b.printf("[Warning] one or more build args were not consumed: %s\n", strings.Join(unused, ", "))
	}
	if err := b.commit(ctx, last); err != nil {
		return nil, err
	}
	b.printf("COMMIT %s\n", strings.Join(b.result.Names, ", "))
	b.printf("--> %s (%d steps, %d from the cache, %s)\n", shortDigest(b.result.ConfigDigest), b.result.Steps+b.result.CachedSteps, b.result.CachedSteps, time.Since(t0).Round(time.Millisecond))
	return &b.result, nil
}

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		return d[:12]
	}
	return d
}

// stepErr wraps err as the failure of the current step.
func (b *builder) stepErr(c instructions.Command, err error) error {
	var se *StepError
	if errors.As(err, &se) {
		if se.Step == 0 {
			se.Step, se.Steps, se.File, se.Line, se.Instruction = b.step, b.steps, b.df.name, line(c.Location()), instructionText(c)
		}
		return se
	}
	return &StepError{Step: b.step, Steps: b.steps, File: b.df.name, Line: line(c.Location()), Instruction: instructionText(c), ExitStatus: -1, Err: err}
}

func instructionText(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		t := s.String()
		if i := strings.IndexByte(t, '\n'); i >= 0 {
			t = t[:i] + " ..."
		}
		return t
	}
	return strings.ToUpper(c.Name())
}

// buildStage runs the stage i: FROM, the base image's ONBUILD triggers, the instructions.
func (b *builder) buildStage(ctx context.Context, i int) (*stage, error) {
	ds := b.df.stages[i]
	b.step++
	b.printf("STEP %d/%d: %s\n", b.step, b.steps, ds.SourceCode)
	t0 := time.Now()
	base, _, err := b.df.lex.ProcessWord(ds.BaseName, b.meta)
	if err != nil {
		return nil, &StepError{Step: b.step, Steps: b.steps, File: b.df.name, Line: line(ds.Location), Instruction: ds.SourceCode, ExitStatus: -1, Err: err}
	}
	s, err := b.from(ctx, base, ds.Platform, i)
	if err != nil {
		return nil, &StepError{Step: b.step, Steps: b.steps, File: b.df.name, Line: line(ds.Location), Instruction: ds.SourceCode, ExitStatus: -1, Err: err}
	}
	s.idx, s.name = i, ds.Name
	if !hasPath(s.img.Config.Env) {
		// As BuildKit and buildah: a stage always has a PATH, scratch and PATH-less images too.
		s.img.Config.Env = append([]string{"PATH=" + spec.DefaultPath}, s.img.Config.Env...)
	}
	b.debugDone(t0)
	cmds := ds.Commands
	if triggers := s.img.Config.OnBuild; len(triggers) > 0 {
		s.img.Config.OnBuild = nil
		for _, t := range triggers {
			c, err := parseTrigger(t)
			if err != nil {
				return nil, &StepError{Step: b.step, Steps: b.steps, File: b.df.name, Line: line(ds.Location), Instruction: "ONBUILD " + t, ExitStatus: -1, Err: err}
			}
			b.printf("--> ONBUILD %s\n", t)
			if err := b.dispatch(ctx, s, c); err != nil {
				return nil, &StepError{Step: b.step, Steps: b.steps, File: b.df.name, Line: line(ds.Location), Instruction: "ONBUILD " + t, ExitStatus: -1, Err: err}
			}
		}
	}
	for _, c := range cmds {
		b.step++
		b.printf("STEP %d/%d: %s\n", b.step, b.steps, instructionText(c))
		t0 := time.Now()
		if err := b.dispatch(ctx, s, c); err != nil {
			return nil, b.stepErr(c, err)
		}
		b.debugDone(t0)
	}
	return s, nil
}

func (b *builder) debugDone(t0 time.Time) {
	if d := time.Since(t0); d >= 100*time.Millisecond {
		b.printf("--> %s\n", d.Round(time.Millisecond))
	}
}

// from starts a stage on base: scratch, an earlier stage, or an image (from the store, else pulled).
func (b *builder) from(ctx context.Context, base, platform string, idx int) (*stage, error) {
	if platform != "" {
		var err error
		if platform, _, err = b.df.lex.ProcessWord(platform, b.meta); err != nil {
			return nil, err
		}
	}
	if strings.EqualFold(base, "scratch") {
		s := &stage{key: hashKey("scratch"), args: newVars()}
		p := b.platform
		if platform != "" {
			if p, _ = image.ParsePlatform(platform); p.OS == "" {
				p = b.platform
			}
		}
		s.img.OS, s.img.Architecture, s.img.Variant = p.OS, p.Architecture, p.Variant
		s.img.RootFS.Type = "layers"
		return s, nil
	}
	if j, ok, err := b.df.stageRef(base, idx); err != nil {
		return nil, err
	} else if ok {
		prev := b.stages[j]
		if prev == nil {
			return nil, fmt.Errorf("stage %s was not built", base)
		}
		return prev.fork(), nil
	}
	s, err := b.imageStage(ctx, base, platform)
	if err != nil {
		return nil, err
	}
	return s.fork(), nil
}

func hasPath(env []string) bool {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return true
		}
	}
	return false
}

// fork returns a new stage starting where s ends.
func (s *stage) fork() *stage {
	n := &stage{img: s.img, key: s.key, args: newVars()}
	n.lowers = append([]string(nil), s.lowers...)
	n.layers = append([]*layerRef(nil), s.layers...)
	n.img.History = append([]ocispec.History(nil), s.img.History...)
	n.img.Config.Env = append([]string(nil), s.img.Config.Env...)
	n.img.Config.Labels = cloneMap(s.img.Config.Labels)
	n.img.Config.ExposedPorts = cloneMap(s.img.Config.ExposedPorts)
	n.img.Config.Volumes = cloneMap(s.img.Config.Volumes)
	n.img.Config.OnBuild = append([]string(nil), s.img.Config.OnBuild...)
	return n
}

func cloneMap[V any](m map[string]V) map[string]V {
	if m == nil {
		return nil
	}
	out := make(map[string]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// imageStage resolves ref (pulling it when the store lacks it) and unpacks its layers once into a
// base directory named by the layer chain.
func (b *builder) imageStage(ctx context.Context, ref, platform string) (*stage, error) {
	if s, ok := b.images[ref+"|"+platform]; ok {
		return s, nil
	}
	plat := platform
	if plat == "" {
		plat = b.o.Platform
	}
	img, err := b.st.Resolve(ctx, ref, plat)
	if errors.Is(err, image.ErrUnknownImage) || errors.Is(err, image.ErrPlatform) {
		b.printf("Pulling %s\n", ref)
		resolveErr := err
		// The builder unpacks base images into its own cache (build/base): no layer-cache unpack.
		img, err = b.st.Pull(ctx, ref, image.PullOptions{Platform: plat, Insecure: b.o.Insecure, Progress: b.out, NoUnpack: true})
		if err != nil && errors.Is(resolveErr, image.ErrPlatform) {
			err = fmt.Errorf("%v; pulling it: %w", resolveErr, err)
		}
	}
	if err != nil {
		return nil, err
	}
	s := &stage{key: hashKey("image", img.ManifestDigest)}
	if err := json.Unmarshal(img.RawConfig, &s.img); err != nil {
		return nil, fmt.Errorf("image %s: config: %w", img.Ref, err)
	}
	for _, l := range img.Layers {
		s.layers = append(s.layers, doneLayer(cacheEntry{MediaType: ociLayerType(l.MediaType), Digest: l.Digest, Size: l.Size, DiffID: l.DiffID}))
	}
	if len(img.Layers) > 0 {
		dir, err := b.baseDir(ctx, img)
		if err != nil {
			return nil, err
		}
		s.lowers = []string{dir}
	}
	b.images[ref+"|"+platform] = s
	return s, nil
}

// ociLayerType maps Docker's layer media types to their OCI equals (the bytes are the same).
func ociLayerType(mt string) string {
	switch mt {
	case "application/vnd.docker.image.rootfs.diff.tar.gzip":
		return ocispec.MediaTypeImageLayerGzip
	case "application/vnd.docker.image.rootfs.diff.tar":
		return ocispec.MediaTypeImageLayer
	}
	return mt
}

// baseDir returns the directory holding img's layers unpacked, unpacking them the first time.
func (b *builder) baseDir(ctx context.Context, img *image.Image) (string, error) {
	var chain []string
	for _, l := range img.Layers {
		chain = append(chain, l.DiffID)
	}
	dir := filepath.Join(b.dir, "base", hashKey(chain...)[:24])
	if _, err := os.Stat(dir); err == nil {
		return dir, nil
	}
	t0 := time.Now()
	tmp := filepath.Join(b.tmp, "base-"+hashKey(chain...)[:12])
	readers := make([]io.Reader, len(img.Layers))
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for i, l := range img.Layers {
		rc, err := b.st.OpenBlob(l.Digest)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", img.Ref, err)
		}
		closers = append(closers, rc)
		readers[i] = rc
	}
	if err := unpack.Unpack(ctx, tmp, readers, unpack.Options{Log: b.log}); err != nil {
		return "", fmt.Errorf("image %s: unpack: %w", img.Ref, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr != nil {
			return "", fmt.Errorf("image %s: %w", img.Ref, err)
		}
	}
	b.printf("--> unpacked %s (%d layers, %s)\n", img.Ref, len(img.Layers), time.Since(t0).Round(time.Millisecond))
	return dir, nil
}

// parseTrigger parses an ONBUILD trigger of a base image.
func parseTrigger(t string) (instructions.Command, error) {
	df, err := parseDockerfile("ONBUILD", []byte("FROM scratch\n"+t+"\n"))
	if err != nil {
		return nil, err
	}
	if len(df.stages[0].Commands) != 1 {
		return nil, fmt.Errorf("ONBUILD %s: not one instruction", t)
	}
	return df.stages[0].Commands[0], nil
}

// scope is the environment instructions are expanded with: the stage's ARGs under its ENV.
func (s *stage) scope() *vars { return s.args.overlay(s.img.Config.Env) }

// expand expands the words of c that Dockerfiles expand.
func (b *builder) expand(s *stage, c instructions.Command) error {
	env := s.scope()
	word := func(w string) (string, error) {
		r, _, err := b.df.lex.ProcessWord(w, env)
		return r, err
	}
	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := e.Expand(word); err != nil {
			return err
		}
	}
	if e, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		if err := e.ExpandRaw(func(w string) (string, error) {
			r, err := b.df.lex.ProcessWordWithMatches(w, env)
			return r.Result, err
		}); err != nil {
			return err
		}
	}
	return nil
}

// history adds a history entry for c.
func (b *builder) history(s *stage, c instructions.Command, empty bool) {
	s.img.History = append(s.img.History, ocispec.History{
		Created:    timePtr(b.now()),
		CreatedBy:  instructionText(c),
		Comment:    "knast build",
		EmptyLayer: empty,
	})
}

// now is the time recorded in the config and history: SOURCE_DATE_EPOCH when given, for
// reproducible images.
func (b *builder) now() time.Time {
	if !b.epoch.IsZero() {
		return b.epoch
	}
	return time.Now().UTC()
}

func timePtr(t time.Time) *time.Time { return &t }

// dispatch runs one instruction on the stage.
func (b *builder) dispatch(ctx context.Context, s *stage, c instructions.Command) error {
	if err := b.expand(s, c); err != nil {
		return err
	}
	cfg := &s.img.Config
	switch c := c.(type) {
	case *instructions.EnvCommand:
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
		}
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			switch v, ok := b.o.BuildArgs[kv.Key]; {
			case ok:
				b.used[kv.Key] = true
				s.args.Set(kv.Key, v)
			case kv.Value != nil:
				s.args.Set(kv.Key, *kv.Value)
			default:
				if mv, ok := b.meta.Get(kv.Key); ok {
					s.args.Set(kv.Key, mv)
				}
			}
		}
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
		}
	case *instructions.MaintainerCommand:
		s.img.Author = c.Maintainer
	case *instructions.UserCommand:
		cfg.User = c.User
	case *instructions.WorkdirCommand:
		wd := c.Path
		if !path.IsAbs(wd) {
			cur := cfg.WorkingDir
			if cur == "" {
				cur = "/"
			}
			wd = path.Join(cur, wd)
		}
		cfg.WorkingDir = path.Clean(wd)
		return b.fsStep(ctx, s, c, "WORKDIR "+cfg.WorkingDir, func(rootfs, _ string) error {
			cp, err := newCopier(ctx, rootfs)
			if err != nil {
				return err
			}
			d, err := cp.ensureDir(cfg.WorkingDir, nil)
			if err == nil {
				d.Close()
			}
			if cerr := cp.close(); err == nil {
				err = cerr
			}
			return err
		})
	case *instructions.CmdCommand:
		args, pipes, err := shellArgs(c.ShellDependantCmdLine, b.shell(s))
		if err != nil {
			return err
		}
		if len(pipes) > 0 {
			return errors.New("CMD: a heredoc script is only supported by RUN")
		}
		cfg.Cmd = args
		s.cmdSet = true
	case *instructions.EntrypointCommand:
		args, pipes, err := shellArgs(c.ShellDependantCmdLine, b.shell(s))
		if err != nil {
			return err
		}
		if len(pipes) > 0 {
			return errors.New("ENTRYPOINT: a heredoc script is only supported by RUN")
		}
		cfg.Entrypoint = args
		if !s.cmdSet {
			// As Docker: a new ENTRYPOINT drops the CMD inherited from the base.
			cfg.Cmd = nil
		}
	case *instructions.ExposeCommand:
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		for _, p := range c.Ports {
			words, err := b.df.lex.ProcessWords(p, s.scope())
			if err != nil {
				return err
			}
			for _, w := range words {
				ports, err := expandPorts(w)
				if err != nil {
					return err
				}
				for _, pp := range ports {
					cfg.ExposedPorts[pp] = struct{}{}
				}
			}
		}
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return errors.New("VOLUME: an empty path")
			}
			cfg.Volumes[v] = struct{}{}
		}
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
	case *instructions.HealthCheckCommand:
		cfg.Healthcheck = c.Health
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
	case *instructions.ShellCommand:
		cfg.Shell = append([]string(nil), c.Shell...)
	case *instructions.RunCommand:
		return b.runInstruction(ctx, s, c)
	case *instructions.CopyCommand:
		return b.copyInstruction(ctx, s, c)
	case *instructions.AddCommand:
		return b.addInstruction(ctx, s, c)
	default:
		return fmt.Errorf("%s is not supported", strings.ToUpper(c.Name()))
	}
	b.history(s, c, true)
	return nil
}

func (b *builder) shell(s *stage) []string {
	if len(s.img.Config.Shell) > 0 {
		return s.img.Config.Shell
	}
	return defaultShell
}

// configKey is the part of the configuration a step's result depends on.
func configKey(s *stage) string {
	c := s.img.Config
	b, _ := json.Marshal(struct {
		Env        []string
		User       string
		WorkingDir string
		Shell      []string
	}{c.Env, c.User, c.WorkingDir, c.Shell})
	return string(b)
}

// fsStep runs a filesystem step: from the cache when the key is known, else do on a fresh overlay
// of the stage, whose upper directory becomes the step's layer.
func (b *builder) fsStep(ctx context.Context, s *stage, c instructions.Command, keyText string, do func(rootfs, upper string) error) error {
	key := hashKey(s.key, configKey(s), keyText)
	// A step this very build already ran (two stages alike) is reused even with --no-cache.
	if l, ok := b.jobs[key]; ok {
		b.printf("--> Using cache %s\n", key[:12])
		b.apply(s, c, key, l)
		b.result.CachedSteps++
		return nil
	}
	if !b.o.NoCache {
		if e, ok := b.cache.get(key); ok && (e.Empty || b.st.HasBlob(e.Digest)) {
			b.printf("--> Using cache %s\n", key[:12])
			b.apply(s, c, key, doneLayer(*e))
			b.result.CachedSteps++
			return nil
		}
	}
	b.seq++
	work := filepath.Join(b.tmp, fmt.Sprintf("step-%d", b.seq))
	upper, wdir, merged := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "rootfs")
	for _, d := range []string{upper, wdir, merged} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("step directory: %w", err)
		}
	}
	lowers := s.lowers
	if len(lowers) == 0 {
		lowers = []string{filepath.Join(b.dir, "empty")}
	}
	if err := matchRoot(upper, lowers[len(lowers)-1]); err != nil {
		return err
	}
	t0 := time.Now()
	if err := mountOverlay(lowers, upper, wdir, merged); err != nil {
		return err
	}
	t1 := time.Now()
	err := do(merged, upper)
	t2 := time.Now()
	if uerr := unmount(merged); err == nil {
		err = uerr
	}
	b.log.Debug("build step", "step", b.step, "mount", t1.Sub(t0), "run", t2.Sub(t1), "unmount", time.Since(t2))
	if err != nil {
		return err
	}
	empty, err := isEmptyDir(upper)
	if err != nil {
		return fmt.Errorf("step layer: %w", err)
	}
	if _, err := b.cache.adopt(key, upper); err != nil {
		return err
	}
	var l *layerRef
	if empty {
		l = doneLayer(cacheEntry{Empty: true})
	} else {
		l = b.writeLayer(ctx, b.cache.layerDir(key))
	}
	b.jobs[key] = l
	b.entries[key] = l
	b.apply(s, c, key, l)
	b.result.Steps++
	return nil
}

// layerRef is a layer of a stage: known (base image, cache hit) or being written in the background.
type layerRef struct {
	done chan struct{}
	e    cacheEntry
	err  error
}

func doneLayer(e cacheEntry) *layerRef {
	l := &layerRef{done: make(chan struct{}), e: e}
	close(l.done)
	return l
}

func (l *layerRef) wait() (cacheEntry, error) {
	<-l.done
	return l.e, l.err
}

// writeLayer turns a step's directory into a compressed layer blob in the background: the next
// step already runs on the directory while its blob is written (at most two at a time).
func (b *builder) writeLayer(ctx context.Context, dir string) *layerRef {
	l := &layerRef{done: make(chan struct{})}
	go func() {
		defer close(l.done)
		b.slots <- struct{}{}
		defer func() { <-b.slots }()
		t0 := time.Now()
		var diffID string
		d, size, err := b.st.WriteBlob(ctx, func(w io.Writer) error {
			var err error
			diffID, err = compressLayer(w, dir)
			return err
		})
		if err != nil {
			l.err = fmt.Errorf("layer of %s: %w", dir, err)
			return
		}
		l.e = cacheEntry{DiffID: diffID, Digest: d, Size: size, MediaType: ocispec.MediaTypeImageLayerGzip}
		b.log.Debug("build layer", "dir", dir, "size", size, "took", time.Since(t0))
	}()
	return l
}

// finish waits for the layers still being written, makes this build's layer directories durable
// (the step mounts are volatile: one syncfs here instead of one per step) and records their cache
// entries, also after a failed build, for the steps that completed.
func (b *builder) finish() error {
	if len(b.entries) == 0 {
		return nil
	}
	var errs []error
	keys := make([]string, 0, len(b.entries))
	for k, l := range b.entries {
		if _, err := l.wait(); err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	if d, err := os.Open(b.dir); err == nil {
		err = unix.Syncfs(int(d.Fd()))
		d.Close()
		if err != nil {
			return fmt.Errorf("build cache: sync: %w", err)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := b.cache.put(k, b.entries[k].e); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// matchRoot gives the upper directory the owner and mode of the lower root: overlay shows the
// upper root's attributes as the rootfs's /.
func matchRoot(upper, lower string) error {
	var st unix.Stat_t
	if err := unix.Stat(lower, &st); err != nil {
		return fmt.Errorf("step directory: %w", err)
	}
	if err := unix.Chown(upper, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("step directory: %w", err)
	}
	if err := unix.Chmod(upper, st.Mode&0o7777); err != nil {
		return fmt.Errorf("step directory: %w", err)
	}
	return nil
}

// apply adds a step's result to the stage.
func (b *builder) apply(s *stage, c instructions.Command, key string, l *layerRef) {
	s.key = key
	empty := false
	select {
	case <-l.done:
		empty = l.e.Empty
	default:
	}
	if !empty {
		s.lowers = append(s.lowers, b.cache.layerDir(key))
		s.layers = append(s.layers, l)
	}
	b.history(s, c, empty)
}

// rootOf returns a read-only mount of the stage's rootfs (for COPY --from).
func (b *builder) rootOf(s *stage) (string, error) {
	if s.root != "" {
		return s.root, nil
	}
	b.seq++
	dir := filepath.Join(b.tmp, fmt.Sprintf("from-%d", b.seq))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("mount stage: %w", err)
	}
	lowers := append([]string{filepath.Join(b.dir, "empty")}, s.lowers...)
	if err := mountOverlay(lowers, "", "", dir); err != nil {
		return "", err
	}
	b.mounts = append(b.mounts, dir)
	s.root = dir
	return dir, nil
}

// commit writes the final stage as an image into the store, names it and exports or pushes it.
func (b *builder) commit(ctx context.Context, s *stage) error {
	img := s.img
	img.Created = timePtr(b.now())
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = []digest.Digest{}
	layers := []ocispec.Descriptor{}
	for _, l := range s.layers {
		e, err := l.wait()
		if err != nil {
			return err
		}
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.Digest(e.DiffID))
		layers = append(layers, ocispec.Descriptor{MediaType: e.MediaType, Digest: digest.Digest(e.Digest), Size: e.Size})
	}
	if img.OS == "" {
		img.OS, img.Architecture, img.Variant = b.platform.OS, b.platform.Architecture, b.platform.Variant
	}
	raw, err := json.Marshal(img)
	if err != nil {
		return fmt.Errorf("image config: %w", err)
	}
	names := b.o.Tags
	if len(names) == 0 {
		names = []string{"localhost/knast-build-" + shortDigest(digest.FromBytes(raw).String())}
	}
	plat := image.Platform{OS: img.OS, Architecture: img.Architecture, Variant: img.Variant}
	md, err := b.st.Commit(ctx, image.CommitOptions{Names: names, Config: raw, Layers: layers, Platform: plat.String(), Created: *img.Created})
	if err != nil {
		return err
	}
	b.result.ManifestDigest = md
	b.result.ConfigDigest = digest.FromBytes(raw).String()
	for _, n := range names {
		nn, err := image.NormalizeName(n)
		if err != nil {
			return err
		}
		b.result.Names = append(b.result.Names, nn)
	}
	if b.o.OutputOCI != "" {
		if err := b.export(ctx, b.result.Names[0]); err != nil {
			return err
		}
	}
	if b.o.Push {
		for _, n := range b.result.Names {
			if _, err := b.st.Push(ctx, n, "", image.PushOptions{Insecure: b.o.Insecure, Progress: b.out}); err != nil {
				return err
			}
		}
	}
	return nil
}

// export writes the image as an OCI archive to --output's dest.
func (b *builder) export(ctx context.Context, name string) error {
	tmp := b.o.OutputOCI + ".partial"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("--output: %w", err)
	}
	err = b.st.Save(ctx, f, []string{name}, image.FormatOCIArchive)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, b.o.OutputOCI)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("--output %s: %w", b.o.OutputOCI, err)
	}
	b.printf("Wrote %s\n", b.o.OutputOCI)
	return nil
}
