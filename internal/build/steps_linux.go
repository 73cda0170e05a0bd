package build

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	pathrs "github.com/cyphar/filepath-securejoin/pathrs-lite"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/spec"
)

// runEnv is the environment of a RUN: the stage's ENV and, under it, the ARGs in scope.
func (b *builder) runEnv(s *stage) []string {
	env := append([]string(nil), s.img.Config.Env...)
	have := map[string]bool{}
	for _, e := range env {
		k, _, _ := strings.Cut(e, "=")
		have[k] = true
	}
	for _, k := range s.args.keys {
		if !have[k] {
			env = append(env, k+"="+s.args.m[k])
			have[k] = true
		}
	}
	for _, k := range proxyArgs {
		if v, ok := b.o.BuildArgs[k]; ok && !have[k] {
			b.used[k] = true
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (b *builder) runInstruction(ctx context.Context, s *stage, c *instructions.RunCommand) error {
	if len(c.FlagsUsed) > 0 {
		return fmt.Errorf("RUN --%s is not supported", c.FlagsUsed[0])
	}
	if arch := s.img.Architecture; arch != "" && arch != runtime.GOARCH {
		return fmt.Errorf("RUN: the stage's image is for %s, this machine runs %s (no emulation)", arch, runtime.GOARCH)
	}
	args, pipes, err := shellArgs(c.ShellDependantCmdLine, b.shell(s))
	if err != nil {
		return err
	}
	env := b.runEnv(s)
	keyEnv := append([]string(nil), env...)
	sort.Strings(keyEnv)
	key, _ := json.Marshal(struct {
		Args    []string
		Pipes   map[string]string
		Env     []string
		Network string
	}{args, pipes, keyEnv, b.o.Network})
	return b.fsStep(ctx, s, c, "RUN "+string(key), func(rootfs, upper string) error {
		return b.runContainer(ctx, s, rootfs, upper, args, pipes, env)
	})
}

// runContainer runs args in a knast container on rootfs with the stage's user and working
// directory, streaming its output.
func (b *builder) runContainer(ctx context.Context, s *stage, rootfs, upper string, args []string, pipes map[string]string, env []string) error {
	ic := ocispec.Image{Platform: s.img.Platform, Config: s.img.Config.ImageConfig}
	ic.Config.Entrypoint, ic.Config.Cmd, ic.Config.Env = nil, nil, env
	if wd := ic.Config.WorkingDir; wd != "" {
		cp, err := newCopier(ctx, rootfs)
		if err != nil {
			return err
		}
		d, err := cp.ensureDir(wd, nil)
		if err == nil {
			d.Close()
		}
		if cerr := cp.close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("working directory: %w", err)
		}
	}
	sp, err := spec.FromImage(ic, rootfs, spec.FromImageOptions{Args: args, Hostname: "knast-build"})
	if err != nil {
		return err
	}
	sp.Root = &specs.Root{Path: rootfs}
	sp.Annotations = nil
	b.seq++
	n := b.seq
	switch b.o.Network {
	case NetworkHost, NetworkNone:
	default:
		// A knast network: the runtime attaches the step's container through the Networker. Name
		// resolution comes from a filtered copy of the host's resolv.conf, bound over the image's.
		sp.Annotations = maps.Clone(b.o.RunAnnotations)
		resolv, err := b.stepResolvConf()
		if err != nil {
			return err
		}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/etc/resolv.conf", Type: "bind", Source: resolv, Options: []string{"rbind", "ro"}})
	}
	if b.o.Network == NetworkHost {
		ns := sp.Linux.Namespaces[:0]
		for _, x := range sp.Linux.Namespaces {
			if x.Type != specs.NetworkNamespace {
				ns = append(ns, x)
			}
		}
		sp.Linux.Namespaces = ns
		for _, f := range []string{"/etc/resolv.conf", "/etc/hosts"} {
			if _, err := os.Stat(f); err == nil {
				sp.Mounts = append(sp.Mounts, specs.Mount{Destination: f, Type: "bind", Source: f, Options: []string{"rbind", "ro"}})
			}
		}
	}
	if len(pipes) > 0 {
		dir := filepath.Join(b.tmp, fmt.Sprintf("pipes-%d", n))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("heredoc: %w", err)
		}
		for name, data := range pipes {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
				return fmt.Errorf("heredoc: %w", err)
			}
		}
		sp.Mounts = append(sp.Mounts, specs.Mount{Destination: "/dev/pipes", Type: "bind", Source: dir, Options: []string{"rbind", "ro"}})
	}
	missing := missingMountpoints(rootfs, sp.Mounts)
	if err := makeFilePlaceholders(ctx, rootfs, missing); err != nil {
		return err
	}

	bundle := filepath.Join(b.tmp, fmt.Sprintf("run-%d", n))
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return fmt.Errorf("bundle: %w", err)
	}
	data, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devNull.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("output pipe: %w", err)
	}
	tail := &tailBuffer{max: 8 << 10}
	var sink io.Writer = tail
	if !b.o.Quiet {
		sink = io.MultiWriter(b.out, tail)
	}
	copied := make(chan struct{})
	go func() {
		io.Copy(sink, r)
		r.Close()
		close(copied)
	}()
	id := fmt.Sprintf("knast-build-%s-%d", b.id, n)
	// Run waits for the process alone; a cancelled build kills it.
	stop := context.AfterFunc(ctx, func() { b.mgr.Kill(context.Background(), id, unix.SIGKILL, true) })
	code, err := b.mgr.Run(ctx, id, container.RunOptions{CreateOptions: container.CreateOptions{
		Bundle: bundle, Stdin: devNull, Stdout: w, Stderr: w,
	}})
	stop()
	w.Close()
	<-copied
	if cerr := removePlaceholders(upper, missing, s.lowers); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if code != 0 {
		se := &StepError{ExitStatus: code, Err: fmt.Errorf("exit status %d", code)}
		if b.o.Quiet {
			se.Output = tail.String()
		}
		return se
	}
	return nil
}

// placeholder is a mount destination the rootfs lacks: the runtime creates it (and the missing
// directories above it) for the mount, and none of that may end up in the layer.
type placeholder struct {
	rel     string   // the destination, symlinks resolved inside the rootfs
	created []string // its missing ancestors, deepest first
	file    bool     // a bind mount of a file: we make the mountpoint, the runtime only makes dirs
}

// missingMountpoints returns the placeholders the runtime will create for mounts.
func missingMountpoints(rootfs string, mounts []specs.Mount) []placeholder {
	var out []placeholder
	for _, m := range mounts {
		rel := strings.TrimPrefix(path.Clean("/"+m.Destination), "/")
		if rel == "" || strings.HasPrefix(rel, "dev/") || strings.HasPrefix(rel, "proc/") || strings.HasPrefix(rel, "sys/") {
			continue
		}
		p, err := securejoin.SecureJoin(rootfs, rel)
		if err != nil {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			continue
		}
		ph := placeholder{rel: strings.TrimPrefix(strings.TrimPrefix(p, rootfs), "/")}
		if fi, err := os.Stat(m.Source); err == nil && m.Type == "bind" && fi.Mode().IsRegular() {
			ph.file = true
		}
		for d := path.Dir(ph.rel); d != "." && d != "/"; d = path.Dir(d) {
			if _, err := os.Lstat(filepath.Join(rootfs, d)); err == nil {
				break
			}
			ph.created = append(ph.created, d)
		}
		out = append(out, ph)
	}
	return out
}

// makeFilePlaceholders creates the empty files file bind mounts need (inside the rootfs, through
// its symlinks, as the mount will resolve them).
func makeFilePlaceholders(ctx context.Context, rootfs string, missing []placeholder) error {
	var files []placeholder
	for _, ph := range missing {
		if ph.file {
			files = append(files, ph)
		}
	}
	if len(files) == 0 {
		return nil
	}
	cp, err := newCopier(ctx, rootfs)
	if err != nil {
		return err
	}
	for _, ph := range files {
		if err = cp.writeFile("/"+ph.rel, strings.NewReader(""), 0o644, time.Time{}, copyOptions{}); err != nil {
			break
		}
	}
	if cerr := cp.close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	return nil
}

// removePlaceholders deletes from upper the empty mountpoints the runtime created, the directories
// it made for them, and the parent directories that were copied up only to hold them.
func removePlaceholders(upper string, missing []placeholder, lowers []string) error {
	for _, ph := range missing {
		p := filepath.Join(upper, ph.rel)
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		if (fi.IsDir() && isEmpty(p)) || (fi.Mode().IsRegular() && fi.Size() == 0) {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove mountpoint %s: %w", ph.rel, err)
			}
		}
		for _, d := range ph.created {
			if q := filepath.Join(upper, d); isEmpty(q) {
				os.Remove(q)
			}
		}
		for d := path.Dir(ph.rel); d != "." && d != "/"; d = path.Dir(d) {
			q := filepath.Join(upper, d)
			if _, err := os.Lstat(q); err != nil {
				continue
			}
			if !isEmpty(q) || !inLowers(lowers, d) {
				break
			}
			if xs, opaque, _ := readXattrs(q); opaque || len(xs) > 0 {
				break
			}
			os.Remove(q)
		}
	}
	return nil
}

func isEmpty(dir string) bool {
	ok, err := isEmptyDir(dir)
	return err == nil && ok
}

func inLowers(lowers []string, rel string) bool {
	for _, l := range lowers {
		if _, err := os.Lstat(filepath.Join(l, rel)); err == nil {
			return true
		}
	}
	return false
}

func (b *builder) copyInstruction(ctx context.Context, s *stage, c *instructions.CopyCommand) error {
	if c.Parents {
		return errors.New("COPY --parents is not supported")
	}
	if len(c.ExcludePatterns) > 0 {
		return errors.New("COPY --exclude is not supported")
	}
	tree, fromKey := b.context, ""
	if c.From != "" {
		var err error
		if tree, fromKey, err = b.fromTree(ctx, s, c.From); err != nil {
			return err
		}
	}
	return b.copyFiles(ctx, s, c, tree, fromKey, c.SourcesAndDest, c.Chown, c.Chmod, false, "")
}

// fromTree opens the root filesystem COPY --from names: an earlier stage or an image.
func (b *builder) fromTree(ctx context.Context, s *stage, from string) (*srcTree, string, error) {
	if j, ok, err := b.df.stageRef(from, s.idx); err != nil {
		return nil, "", fmt.Errorf("--from=%s: %w", from, err)
	} else if ok {
		st := b.stages[j]
		if st == nil {
			return nil, "", fmt.Errorf("--from=%s: the stage was not built", from)
		}
		root, err := b.rootOf(st)
		if err != nil {
			return nil, "", err
		}
		return &srcTree{root: root, what: "stage " + from, keepOwners: true}, st.key, nil
	}
	if strings.EqualFold(from, s.name) && s.name != "" {
		return nil, "", fmt.Errorf("--from=%s: a stage cannot copy from itself", from)
	}
	is, err := b.imageStage(ctx, from, "")
	if err != nil {
		return nil, "", fmt.Errorf("--from=%s: %w", from, err)
	}
	root, err := b.rootOf(is)
	if err != nil {
		return nil, "", err
	}
	return &srcTree{root: root, what: "image " + from, keepOwners: true}, is.key, nil
}

func (b *builder) addInstruction(ctx context.Context, s *stage, c *instructions.AddCommand) error {
	switch {
	case c.KeepGitDir != nil:
		return errors.New("ADD --keep-git-dir is not supported (git sources are not)")
	case len(c.ExcludePatterns) > 0:
		return errors.New("ADD --exclude is not supported")
	}
	return b.copyFiles(ctx, s, c, b.context, "", c.SourcesAndDest, c.Chown, c.Chmod, c.Unpack == nil || *c.Unpack, c.Checksum)
}

// download is an ADD URL fetched into the build's directory.
type download struct {
	url, file, name string
	mtime           time.Time
	digest          string
}

// fetch downloads an ADD URL. Only the address the Dockerfile names is contacted.
func (b *builder) fetch(ctx context.Context, raw, checksum string) (*download, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	b.seq++
	file := filepath.Join(b.tmp, fmt.Sprintf("download-%d", b.seq))
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, raw, nil)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyFromEnvironment, ResponseHeaderTimeout: time.Minute}}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: cannot fetch the URL: %w", raw, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("ADD %s: the server answered %s", raw, resp.Status)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ADD %s: %w", raw, err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), resp.Body)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("ADD %s: download: %w", raw, err)
	}
	d := &download{url: raw, file: file, name: path.Base(u.Path), digest: "sha256:" + hex.EncodeToString(h.Sum(nil))}
	if d.name == "/" || d.name == "." {
		d.name = ""
	}
	if lm := resp.Header.Get("Last-Modified"); lm != "" {
		if t, err := http.ParseTime(lm); err == nil {
			d.mtime = t
		}
	}
	if checksum != "" && checksum != d.digest {
		return nil, fmt.Errorf("ADD %s: content has %s, --checksum wants %s", raw, d.digest, checksum)
	}
	return d, nil
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// copyFiles is COPY and ADD: sources from tree (or URLs and heredocs) to the destination.
func (b *builder) copyFiles(ctx context.Context, s *stage, c instructions.Command, tree *srcTree, fromKey string, sd instructions.SourcesAndDest, chown, chmod string, unpackArchives bool, checksum string) error {
	isAdd := strings.EqualFold(c.Name(), "add")
	dest := sd.DestPath
	destDir := strings.HasSuffix(dest, "/") || dest == "." || strings.HasSuffix(dest, "/.")
	if !path.IsAbs(dest) {
		wd := s.img.Config.WorkingDir
		if wd == "" {
			wd = "/"
		}
		dest = path.Join(wd, dest)
	}
	dest = path.Clean(dest)
	var mode *uint32
	if chmod != "" {
		m, err := strconv.ParseUint(chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("--chmod=%s: not an octal mode", chmod)
		}
		mm := uint32(m)
		mode = &mm
	}
	if checksum != "" && (len(sd.SourcePaths) != 1 || !isURL(sd.SourcePaths[0])) {
		return errors.New("ADD --checksum needs exactly one http(s) URL source")
	}
	var (
		srcs      []source
		downloads []*download
		wildcard  bool
	)
	for _, p := range sd.SourcePaths {
		if isAdd && isURL(p) {
			d, err := b.fetch(ctx, p, checksum)
			if err != nil {
				return err
			}
			downloads = append(downloads, d)
			continue
		}
		if strings.Contains(p, "://") {
			return fmt.Errorf("%s: only http and https URLs are supported", p)
		}
		m, err := tree.match(p)
		if err != nil {
			return err
		}
		wildcard = wildcard || hasMeta(p)
		srcs = append(srcs, m...)
	}
	total := len(srcs) + len(downloads) + len(sd.SourceContents)
	if total > 1 || wildcard {
		if !destDir && total > 1 {
			return fmt.Errorf("with more than one source the destination %s must be a directory ending in /", sd.DestPath)
		}
		destDir = true
	}
	srcDigest, err := tree.digest(srcs)
	if err != nil {
		return err
	}
	var dls []string
	for _, d := range downloads {
		dls = append(dls, d.url+" "+d.digest+" "+d.mtime.String())
	}
	key, _ := json.Marshal(struct {
		Dest, Chown, Chmod, From string
		DestDir, Unpack          bool
		Sources                  string
		Contents                 []instructions.SourceContent
		Downloads                []string
	}{dest, chown, chmod, fromKey, destDir, unpackArchives, srcDigest, sd.SourceContents, dls})
	return b.fsStep(ctx, s, c, strings.ToUpper(c.Name())+" "+string(key), func(rootfs, _ string) error {
		o := copyOptions{chmod: mode, unpack: unpackArchives && isAdd}
		if chown != "" {
			own, err := resolveOwner(rootfs, chown)
			if err != nil {
				return fmt.Errorf("--chown=%s: %w", chown, err)
			}
			o.chown = &own
		}
		cp, err := newCopier(ctx, rootfs)
		if err != nil {
			return err
		}
		err = cp.copy(tree, srcs, dest, destDir, o)
		for i := 0; err == nil && i < len(sd.SourceContents); i++ {
			sc := sd.SourceContents[i]
			target := dest
			if destDir {
				target = path.Join(dest, path.Base("/"+sc.Path))
			}
			err = cp.writeFile(target, strings.NewReader(sc.Data), 0o644, time.Time{}, o)
		}
		for i := 0; err == nil && i < len(downloads); i++ {
			d := downloads[i]
			target := dest
			if destDir {
				if d.name == "" {
					err = fmt.Errorf("ADD %s: the URL names no file; give a file destination", d.url)
					break
				}
				target = path.Join(dest, d.name)
			}
			var f *os.File
			if f, err = os.Open(d.file); err == nil {
				err = cp.writeFile(target, f, 0o600, d.mtime, o)
				f.Close()
			}
		}
		if cerr := cp.close(); err == nil {
			err = cerr
		}
		return err
	})
}

// resolveOwner resolves --chown's USER[:GROUP] (names or ids) through the rootfs's /etc/passwd and
// /etc/group, read inside the rootfs. A user without a group gets the user's primary group when the
// name is in /etc/passwd, else the same id.
func resolveOwner(rootfs, spec string) (owner, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	if u == "" || (hasGroup && g == "") {
		return owner{}, errors.New("want USER[:GROUP]")
	}
	var own owner
	primary := -1
	if id, err := strconv.Atoi(u); err == nil && id >= 0 {
		own.uid = id
		if e, ok := lookupID(rootfs, "/etc/passwd", u, 2, 3); ok {
			primary = e
		}
	} else {
		uid, ok := lookupName(rootfs, "/etc/passwd", u, 2)
		if !ok {
			return owner{}, fmt.Errorf("no user %q in the image's /etc/passwd", u)
		}
		own.uid = uid
		primary, _ = lookupName(rootfs, "/etc/passwd", u, 3)
	}
	switch {
	case !hasGroup && primary >= 0:
		own.gid = primary
	case !hasGroup:
		own.gid = own.uid
	default:
		if id, err := strconv.Atoi(g); err == nil && id >= 0 {
			own.gid = id
		} else {
			gid, ok := lookupName(rootfs, "/etc/group", g, 2)
			if !ok {
				return owner{}, fmt.Errorf("no group %q in the image's /etc/group", g)
			}
			own.gid = gid
		}
	}
	return own, nil
}

// idLines reads a passwd-style file of the rootfs (inside it) as fields.
func idLines(rootfs, name string) [][]string {
	f, err := pathrs.OpenInRoot(rootfs, name)
	if err != nil {
		return nil
	}
	defer f.Close()
	rf, err := pathrs.Reopen(f, unix.O_RDONLY)
	if err != nil {
		return nil
	}
	defer rf.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(rf, 32<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, strings.Split(l, ":"))
	}
	return out
}

// lookupName returns field `field` (a number) of the entry named name.
func lookupName(rootfs, file, name string, field int) (int, bool) {
	for _, f := range idLines(rootfs, file) {
		if len(f) > field && f[0] == name {
			if n, err := strconv.Atoi(f[field]); err == nil {
				return n, true
			}
		}
	}
	return -1, false
}

// lookupID returns field `field` of the entry whose idField is id.
func lookupID(rootfs, file, id string, idField, field int) (int, bool) {
	for _, f := range idLines(rootfs, file) {
		if len(f) > field && len(f) > idField && f[idField] == id {
			if n, err := strconv.Atoi(f[field]); err == nil {
				return n, true
			}
		}
	}
	return -1, false
}

// stepResolvConf writes (once per build) the resolv.conf RUN steps on a knast network see: the host's,
// minus loopback servers that only answer in the host's network namespace.
func (b *builder) stepResolvConf() (string, error) {
	p := filepath.Join(b.tmp, "resolv.conf")
	if _, err := os.Stat(p); err == nil {
		return p, nil
	}
	host, err := os.ReadFile("/etc/resolv.conf")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read the host's /etc/resolv.conf: %w", err)
	}
	if err := os.WriteFile(p, network.ResolvConf(host), 0o644); err != nil {
		return "", fmt.Errorf("resolv.conf for RUN: %w", err)
	}
	return p, nil
}
