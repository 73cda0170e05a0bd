package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/moby/sys/mountinfo"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/spf13/pflag"

	"github.com/knast/knast/internal/container"
	"github.com/knast/knast/internal/image"
	"github.com/knast/knast/internal/image/unpack"
	"github.com/knast/knast/internal/network"
	"github.com/knast/knast/internal/spec"
)

func bundleCmd() command {
	return command{summary: "make a runtime bundle (rootfs and config.json) from an image, pulling it if needed; --rm DIR removes one", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		var o imageBundleOptions
		fs.StringVar(&o.Platform, "platform", "", "os/arch[/variant] of the image (default: the host's, or the stored image's)")
		tlsVerify := fs.Bool("tls-verify", true, "require HTTPS with a verified certificate when pulling")
		fs.BoolVar(&o.Copy, "copy", false, "copy the layers into DIR/rootfs instead of mounting an overlay of the shared layer cache")
		remove := fs.Bool("rm", false, "remove the bundle DIR made by knast bundle: unmount its rootfs, delete its files")
		return func(ctx context.Context, a *app, args []string) error {
			if *remove {
				if err := needArgs("bundle --rm", args, 1, "a bundle directory"); err != nil {
					return err
				}
				if err := removeBundle(args[0]); err != nil {
					return fmt.Errorf("bundle --rm: %w", err)
				}
				return nil
			}
			if err := needArgs("bundle", args, 2, "an image reference and a bundle directory"); err != nil {
				return err
			}
			o.Insecure = !*tlsVerify
			dir, err := filepath.Abs(args[1])
			if err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			if err := a.imageBundle(ctx, args[0], dir, o); err != nil {
				return fmt.Errorf("bundle: %w", err)
			}
			fmt.Fprintln(a.stdout, dir)
			return nil
		}
	}}
}

// imageBundleOptions choose the image and change what its config says.
type imageBundleOptions struct {
	// Platform is os/arch[/variant]; empty means the stored image's, or the host's when pulling.
	Platform string
	// Insecure allows plain HTTP and unverified certificates (--tls-verify=false).
	Insecure bool
	// Copy unpacks the layers into the rootfs instead of mounting an overlay of the layer cache.
	Copy bool
	// Spec carries overrides (args, env, user, ...); its Ref and Digest are set from the image.
	Spec spec.FromImageOptions
	// Mounts are added to the generated config (run's -v).
	Mounts []specs.Mount
	// Annotations are added to the generated config (run's --network and -p).
	Annotations map[string]string
	// HostNetwork leaves the container in the host's network namespace, with the host's resolv.conf.
	HostNetwork bool
}

// imageBundle makes dir (absent or empty) a runtime bundle of the image ref: dir/rootfs and
// dir/config.json from the image config. The rootfs is an overlay mount of the store's layer cache
// (upper and work dirs in dir/.knast-overlay, marked in config.json so that deleting the container
// unmounts and removes them), or with o.Copy, or where overlayfs cannot serve, a copy of the layers.
// The image is pulled into --storage when it is not there. dir is made 0700: the rootfs holds the
// image's setuid binaries, which host users must not reach. On failure everything imageBundle made
// is removed again.
func (a *app) imageBundle(ctx context.Context, ref, dir string, o imageBundleOptions) (err error) {
	created, err := claimBundleDir(dir)
	if err != nil {
		return err
	}
	rootfs := filepath.Join(dir, "rootfs")
	configPath := filepath.Join(dir, "config.json")
	stateDir := filepath.Join(dir, image.OverlayStateDir)
	defer func() {
		if err == nil {
			return
		}
		if uerr := image.UnmountRootfs(rootfs, stateDir); uerr != nil {
			a.log.Warn("bundle: rootfs left mounted", "dir", dir, "err", uerr)
			return // never delete through a mount
		}
		if created {
			os.RemoveAll(dir)
			return
		}
		os.RemoveAll(rootfs)
		os.Remove(configPath)
	}()

	st, err := image.Open(a.storage, a.log)
	if err != nil {
		return err
	}
	img, err := st.Resolve(ctx, ref, o.Platform)
	if errors.Is(err, image.ErrUnknownImage) || errors.Is(err, image.ErrPlatform) {
		img, err = st.Pull(ctx, ref, image.PullOptions{Platform: o.Platform, Insecure: o.Insecure, Progress: a.stderr, NoUnpack: o.Copy})
	}
	if err != nil {
		return err
	}

	overlay := !o.Copy
	if overlay {
		if err := os.Mkdir(rootfs, 0o755); err != nil {
			return fmt.Errorf("rootfs: %w", err)
		}
		err := st.MountRootfs(ctx, img, rootfs, stateDir)
		if errors.Is(err, image.ErrNoOverlay) {
			a.log.Warn("bundle: copying the layers", "reason", err)
			overlay = false
			os.Remove(rootfs)
		} else if err != nil {
			return err
		}
	}
	if !overlay {
		if err := copyLayers(ctx, st, img, rootfs); err != nil {
			return err
		}
	}

	so := o.Spec
	so.Ref, so.Digest = img.Ref, img.ManifestDigest
	s, err := specFromImage(img.Config, rootfs, so)
	if err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	s.Mounts = append(s.Mounts, o.Mounts...)
	if s.Annotations == nil {
		s.Annotations = map[string]string{}
	}
	maps.Copy(s.Annotations, o.Annotations)
	if overlay {
		s.Annotations[image.OverlayAnnotation] = image.OverlayStateDir
	}
	if o.HostNetwork && s.Linux != nil {
		s.Linux.Namespaces = slices.DeleteFunc(s.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
			return ns.Type == specs.NetworkNamespace
		})
	}
	// Like Docker, the working directory and the volumes exist even when no layer made them.
	dirs := []string{s.Process.Cwd}
	for v := range img.Config.Config.Volumes {
		dirs = append(dirs, v)
	}
	sort.Strings(dirs)
	if err := mkdirsInRoot(rootfs, dirs); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if err := writeEtcFiles(rootfs, s.Hostname); err != nil {
		return fmt.Errorf("image %s: %w", img.Ref, err)
	}
	if o.HostNetwork {
		if err := writeNetworkEtc(rootfs, s.Hostname, nil); err != nil {
			return fmt.Errorf("image %s: %w", img.Ref, err)
		}
	}
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	if err := os.WriteFile(configPath, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("config.json: %w", err)
	}
	return nil
}

// claimBundleDir creates dir, or accepts an existing empty directory, and makes it 0700. created says
// whether dir is new (then a failure removes it whole).
func claimBundleDir(dir string) (created bool, err error) {
	switch err := os.Mkdir(dir, 0o700); {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("%s: the parent directory does not exist", dir)
	case !errors.Is(err, fs.ErrExist):
		return false, err
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return false, err
	}
	if !fi.IsDir() {
		return false, fmt.Errorf("%s: exists and is not a directory", dir)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, err
	}
	if len(entries) > 0 {
		return false, fmt.Errorf("%s: not empty (%d entries); a bundle needs a new or empty directory", dir, len(entries))
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return false, err
	}
	return false, nil
}

// copyLayers unpacks img's layers into rootfs, each checked against its diff ID.
func copyLayers(ctx context.Context, st *image.Store, img *image.Image, rootfs string) error {
	layers := make([]io.Reader, len(img.Layers))
	blobs := make([]*lazyBlob, len(img.Layers))
	diffIDs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		blobs[i] = &lazyBlob{st: st, digest: l.Digest}
		layers[i] = blobs[i]
		diffIDs[i] = l.DiffID
	}
	err := unpack.Unpack(ctx, rootfs, layers, unpack.Options{DiffIDs: diffIDs})
	for _, b := range blobs {
		b.Close()
	}
	if err != nil {
		return fmt.Errorf("image %s: unpack: %w", img.Ref, err)
	}
	return nil
}

// removeBundle removes a bundle made by knast bundle (or run --image): the overlay at its rootfs is
// unmounted and its upper dir removed first, and nothing is deleted while anything is still mounted
// below dir. A directory whose config.json knast did not make from an image is refused.
func removeBundle(dir string) error {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return fmt.Errorf("%s: not a bundle: %w", dir, err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s/config.json: %w", dir, err)
	}
	if s.Annotations[spec.AnnotationImageDigest] == "" {
		return fmt.Errorf("%s: not made by knast bundle (config.json has no %s annotation); remove it yourself", dir, spec.AnnotationImageDigest)
	}
	rootfs := filepath.Join(dir, "rootfs")
	if s.Root != nil && s.Root.Path != "" {
		rootfs = s.Root.Path
		if !filepath.IsAbs(rootfs) {
			rootfs = filepath.Join(dir, rootfs)
		}
	}
	if err := image.UnmountRootfs(rootfs, filepath.Join(dir, image.OverlayStateDir)); err != nil {
		return err
	}
	if ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir)); err != nil {
		return fmt.Errorf("read mounts: %w", err)
	} else if len(ms) > 0 {
		return fmt.Errorf("%s is still mounted (%s): unmount it first", ms[0].Mountpoint, ms[0].FSType)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// lazyBlob opens a stored blob on its first Read, so a many-layer image does not hold every layer
// open at once.
type lazyBlob struct {
	st     *image.Store
	digest string
	rc     io.ReadCloser
	err    error
	done   bool
}

func (b *lazyBlob) Read(p []byte) (int, error) {
	if b.rc == nil && b.err == nil {
		if b.rc, b.err = b.st.OpenBlob(b.digest); b.err != nil {
			b.err = fmt.Errorf("layer %s: %w", b.digest, b.err)
		}
	}
	if b.err != nil {
		return 0, b.err
	}
	return b.rc.Read(p)
}

func (b *lazyBlob) Close() error {
	if b.rc == nil || b.done {
		return nil
	}
	b.done = true
	return b.rc.Close()
}

// mkdirsInRoot creates the absolute container paths dirs (0755) inside rootfs; os.Root refuses
// symlinks that lead out of it.
func mkdirsInRoot(rootfs string, dirs []string) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	for _, d := range dirs {
		rel := strings.TrimPrefix(path.Clean("/"+d), "/")
		if rel == "" {
			continue
		}
		if err := r.MkdirAll(rel, 0o755); err != nil {
			return fmt.Errorf("create %s in the rootfs: %w", d, err)
		}
	}
	return nil
}

// writeEtcFiles gives the container an /etc/hostname and an /etc/hosts naming itself, as Docker's
// bind mounts do. The image's files (possibly symlinks) are replaced, never written through.
func writeEtcFiles(rootfs, hostname string) error {
	return writeRootfsFiles(rootfs, []rootfsFile{
		{"etc/hostname", []byte(hostname + "\n")},
		{"etc/hosts", []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + hostname + "\n")},
	})
}

// rootfsFile is one file writeRootfsFiles puts in place: name is relative to the rootfs.
type rootfsFile struct {
	name string
	data []byte
}

// writeRootfsFiles replaces each file inside rootfs, resolving every path as if rootfs were "/": an
// image's symlink (say /etc/hosts -> /host/file) never leads the write out of the root.
func writeRootfsFiles(rootfs string, files []rootfsFile) error {
	r, err := os.OpenRoot(rootfs)
	if err != nil {
		return err
	}
	defer r.Close()
	if err := r.MkdirAll("etc", 0o755); err != nil {
		return fmt.Errorf("create /etc in the rootfs: %w", err)
	}
	for _, f := range files {
		if err := r.Remove(f.name); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("replace /%s in the rootfs: %w", f.name, err)
		}
		w, err := r.OpenFile(f.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return fmt.Errorf("create /%s in the rootfs: %w", f.name, err)
		}
		_, err = w.Write(f.data)
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("write /%s in the rootfs: %w", f.name, err)
		}
	}
	return nil
}

// imageRunOptions are run's flags for running an image: knast run --image REF [flags] [-- CMD ARGS...].
type imageRunOptions struct {
	image       string
	rm          bool
	name        string
	env         []string
	workdir     string
	user        string
	tty         bool
	interactive bool
	volumes     []string
	platform    string
	tlsVerify   bool
	network     string
	publish     []string
}

// imageRunFlags adds the --image flags to run's flag set; runc's run flags keep their meaning.
func imageRunFlags(fs *pflag.FlagSet, o *imageRunOptions) {
	fs.StringVar(&o.image, "image", "", "run this image (pulled when not stored): the arguments become the command, the ID is --name")
	fs.BoolVar(&o.rm, "rm", false, "with --image: remove the bundle when the container exits")
	fs.StringVar(&o.name, "name", "", "with --image: the container ID (default: a random one)")
	fs.StringArrayVarP(&o.env, "env", "e", nil, "with --image: set KEY=VALUE in the environment (KEY alone: copy it from knast's)")
	fs.StringVarP(&o.workdir, "workdir", "w", "", "with --image: the working directory")
	fs.StringVarP(&o.user, "user", "u", "", "with --image: user[:group], names or ids")
	fs.BoolVarP(&o.tty, "tty", "t", false, "with --image: give the process a terminal")
	fs.BoolVarP(&o.interactive, "interactive", "i", false, "with --image: keep stdin open (without it stdin is /dev/null)")
	fs.StringArrayVarP(&o.volumes, "volume", "v", nil, "with --image: bind mount SRC:DST[:ro]")
	fs.StringVar(&o.platform, "platform", "", "with --image: os/arch[/variant] of the image")
	fs.BoolVar(&o.tlsVerify, "tls-verify", true, "with --image: require HTTPS with a verified certificate when pulling")
	fs.StringVar(&o.network, "network", "none", "with --image: none (loopback only), host, or a knast network NAME (default: the default network)")
	fs.StringArrayVarP(&o.publish, "publish", "p", nil, "with --image and a network: publish [HOSTIP:]HOSTPORT:CONTAINERPORT[/tcp|udp]")
}

// checkImageRunFlags refuses --image flags given without --image, so they are not silently ignored.
func checkImageRunFlags(fs *pflag.FlagSet, o *imageRunOptions) error {
	if o.image != "" {
		return nil
	}
	for _, n := range []string{"rm", "name", "env", "workdir", "user", "tty", "interactive", "volume", "platform", "tls-verify", "network", "publish"} {
		if fs.Changed(n) {
			return fmt.Errorf("run: --%s needs --image", n)
		}
	}
	return nil
}

// runImage runs the image o.image: its bundle is made under --storage/bundles/ID, the container runs
// in the foreground (or detached with -d), and with --rm the bundle is removed once it has exited. args
// replace the image's Cmd.
func (a *app) runImage(ctx context.Context, args []string, ro container.RunOptions, o imageRunOptions) error {
	if ro.Detach && o.rm {
		return errors.New("run: --rm needs a foreground container (not --detach)")
	}
	if ro.Bundle != "." && ro.Bundle != "" {
		return errors.New("run: --bundle and --image exclude each other")
	}
	id := o.name
	if id == "" {
		var b [6]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("run: container id: %w", err)
		}
		id = "knast-" + hex.EncodeToString(b[:])
	}
	if err := spec.ValidateID(id); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	bo := imageBundleOptions{Platform: o.platform, Insecure: !o.tlsVerify}
	bo.Spec = spec.FromImageOptions{Args: args, User: o.user, WorkingDir: o.workdir, Terminal: o.tty}
	if len(id) <= 63 {
		bo.Spec.Hostname = id
	}
	for _, e := range o.env {
		if !strings.Contains(e, "=") {
			v, ok := os.LookupEnv(e)
			if !ok {
				continue // like docker: an unset variable is left out
			}
			e += "=" + v
		}
		bo.Spec.Env = append(bo.Spec.Env, e)
	}
	for _, v := range o.volumes {
		m, err := parseVolume(v)
		if err != nil {
			return fmt.Errorf("run: --volume %s: %w", v, err)
		}
		bo.Mounts = append(bo.Mounts, m)
	}
	switch o.network {
	case "none", "":
		if len(o.publish) > 0 {
			return errors.New("run: --publish needs --network NAME (a knast network; \"default\" for the default one)")
		}
	case "host":
		if len(o.publish) > 0 {
			return errors.New("run: --publish with --network host: the container already listens on the host's addresses")
		}
		bo.HostNetwork = true
	default:
		for _, p := range o.publish {
			if _, err := network.ParsePortMapping(p); err != nil {
				return fmt.Errorf("run: --publish %s: %w", p, err)
			}
		}
		bo.Annotations = map[string]string{annNetwork: o.network, annEtc: "rootfs"}
		if len(o.publish) > 0 {
			bo.Annotations[annPorts] = strings.Join(o.publish, ",")
		}
	}
	parent := filepath.Join(a.storage, "bundles")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return fmt.Errorf("run: %w", err)
	}
	dir := filepath.Join(parent, id)
	// run leaves SIGINT/SIGTERM to the container; until it exists they cancel the pull and unpack, which
	// then remove the half-made bundle.
	bctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	err := a.imageBundle(bctx, o.image, dir, bo)
	stop()
	if err != nil {
		return fmt.Errorf("run: %w", err)
	}
	ro.Bundle = dir
	ro.Terminal = o.tty
	if !o.interactive && !o.tty {
		devNull, err := os.Open(os.DevNull)
		if err != nil {
			return fmt.Errorf("run: %w", err)
		}
		defer devNull.Close()
		ro.Stdin, ro.Stdout, ro.Stderr = devNull, os.Stdout, os.Stderr
	}
	code, err := a.manager().Run(ctx, id, ro)
	if o.rm {
		if rerr := removeBundle(dir); rerr != nil && err == nil {
			err = fmt.Errorf("run: remove the bundle: %w", rerr)
		}
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return exitError{code}
	}
	return nil
}

// parseVolume turns SRC:DST[:ro|rw] into a bind mount; SRC must exist on the host.
func parseVolume(v string) (specs.Mount, error) {
	parts := strings.Split(v, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return specs.Mount{}, errors.New("want SRC:DST[:ro]")
	}
	mode := "rw"
	if len(parts) == 3 {
		if parts[2] != "ro" && parts[2] != "rw" {
			return specs.Mount{}, fmt.Errorf("option %q is not ro or rw", parts[2])
		}
		mode = parts[2]
	}
	if !strings.HasPrefix(parts[1], "/") {
		return specs.Mount{}, fmt.Errorf("destination %q is not absolute", parts[1])
	}
	src, err := filepath.Abs(parts[0])
	if err != nil {
		return specs.Mount{}, err
	}
	if _, err := os.Stat(src); err != nil {
		return specs.Mount{}, err
	}
	return specs.Mount{Destination: path.Clean(parts[1]), Type: "bind", Source: src, Options: []string{"rbind", mode}}, nil
}
