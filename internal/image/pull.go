package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/knast/knast/internal/store"
)

// PullOptions are the options of Pull.
type PullOptions struct {
	// Platform is os/arch[/variant]; "" is the host's.
	Platform string
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// Progress receives progress reports (bars on a terminal); nil is quiet.
	Progress io.Writer
	// Jobs bounds concurrent blob downloads (default 3).
	Jobs int
	// RetryDelay is the first wait before retrying a failed request or an interrupted download
	// (doubling after each try; default 1s).
	RetryDelay time.Duration
	// Keychain supplies credentials; nil means Keychain().
	Keychain authn.Keychain
	// NoUnpack skips unpacking the layers into the layer cache during the pull. By default each
	// layer is unpacked (verified against its diff ID) as soon as its blob and the layers below
	// it are in, while the others still download, so a bundle of the image mounts at once. A
	// failed unpack does not fail the pull: PrepareLayers and MountRootfs do it again and report.
	NoUnpack bool
}

const blobAttempts = 4

// Pull fetches ref from its registry into the store and names it: the manifest for the platform
// (chosen from an index when the reference names one), its config and layers. Blobs the store
// already has are not fetched again.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (*Image, error) {
	r, err := ParseReference(ref, o.Insecure)
	if err != nil {
		return nil, err
	}
	want, err := ParsePlatform(o.Platform)
	if err != nil {
		return nil, err
	}
	kc := o.Keychain
	if kc == nil {
		kc = Keychain()
	}
	nm := refName(r)
	repo := r.Context()
	reg := repo.RegistryStr()
	rt, err := authTransport(ctx, repo, kc, o.Insecure, o.RetryDelay, repo.Scope(transport.PullScope))
	if err != nil {
		return nil, err
	}
	ropts := []remote.Option{remote.WithTransport(rt), remote.WithContext(ctx)}
	top, err := remote.Get(r, ropts...)
	if err != nil {
		return nil, registryError(reg, nm, err)
	}

	man, platform := top, want
	switch {
	case top.MediaType.IsIndex():
		idx, err := v1.ParseIndexManifest(bytes.NewReader(top.Manifest))
		if err != nil {
			return nil, fmt.Errorf("%s: index %s: %w", nm, top.Digest, err)
		}
		child, err := choosePlatform(idx, want, nm)
		if err != nil {
			return nil, err
		}
		platform = platformOf(child.Platform)
		if man, err = remote.Get(repo.Digest(child.Digest.String()), ropts...); err != nil {
			return nil, registryError(reg, nm+" manifest "+child.Digest.String(), err)
		}
		if !man.MediaType.IsImage() {
			return nil, fmt.Errorf("%s: index entry %s for %s is a %s, not an image manifest", nm, child.Digest, want, man.MediaType)
		}
	case top.MediaType.IsSchema1():
		return nil, fmt.Errorf("%s: Docker schema 1 manifests are not supported (push the image again with a current client)", nm)
	case !top.MediaType.IsImage():
		return nil, fmt.Errorf("%s: %s is not an image manifest or index", nm, top.MediaType)
	}
	m, err := v1.ParseManifest(bytes.NewReader(man.Manifest))
	if err != nil {
		return nil, fmt.Errorf("%s: manifest %s: %w", nm, man.Digest, err)
	}

	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()

	client := &http.Client{Transport: rt}
	prog := newProgress(o.Progress)
	delay := o.RetryDelay
	if delay <= 0 {
		delay = time.Second
	}
	get := func(ctx context.Context, d v1.Descriptor, kind string) error {
		return s.fetchBlob(ctx, blobFetcher(client, repo, d.Digest), d, kind, prog, delay)
	}
	if err := get(ctx, m.Config, "config"); err != nil {
		prog.wait()
		return nil, fmt.Errorf("%s: config: %w", nm, registryError(reg, "", err))
	}
	cfgRaw, err := s.readBlob(m.Config.Digest.String())
	if err != nil {
		prog.wait()
		return nil, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(cfgRaw))
	if err != nil {
		prog.wait()
		return nil, fmt.Errorf("%s: config %s: %w", nm, m.Config.Digest, err)
	}
	if !top.MediaType.IsIndex() {
		platform = Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}
		if o.Platform != "" && !want.matches(platform) {
			prog.wait()
			return nil, fmt.Errorf("%s: image is for %s, not %s (it has no index of platforms): %w", nm, platform, want, ErrPlatform)
		}
	}

	jobs := o.Jobs
	if jobs <= 0 {
		jobs = 3
	}
	ready := make([]chan struct{}, len(m.Layers))
	for i := range ready {
		ready[i] = make(chan struct{})
	}
	uctx, ucancel := context.WithCancel(ctx)
	defer ucancel()
	unpacked := s.unpackDuringPull(uctx, nm, m, cfg, ready, o.NoUnpack)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	size := man.Size + m.Config.Size
	for i, l := range m.Layers {
		size += l.Size
		g.Go(func() error {
			if err := get(gctx, l, "blob"); err != nil {
				return err
			}
			close(ready[i])
			return nil
		})
	}
	err = g.Wait()
	prog.wait()
	if err != nil {
		ucancel()
		<-unpacked
		return nil, fmt.Errorf("%s: %w", nm, registryError(reg, "", err))
	}
	if err := <-unpacked; errors.Is(err, ErrNoOverlay) {
		// The storage cannot hold overlay layers: bundles copy instead, and say so.
		s.log.Debug("no layer unpacking during the pull", "image", nm, "err", err)
	} else if err != nil {
		s.log.Warn("unpacking layers during the pull", "image", nm, "err", err)
	}

	// The manifest (and index) go in last: a stored manifest always has its blobs.
	if err := s.putVerified(ctx, man.Manifest, man.Digest); err != nil {
		return nil, fmt.Errorf("%s: %w", nm, err)
	}
	if top != man {
		if err := s.putVerified(ctx, top.Manifest, top.Digest); err != nil {
			return nil, fmt.Errorf("%s: %w", nm, err)
		}
	}
	prog.line("Writing manifest to image destination")
	created := cfg.Created.Time
	if created.IsZero() {
		created = time.Now().UTC()
	}
	rec := store.Image{
		Name: nm, Digest: top.Digest.String(), MediaType: string(top.MediaType),
		ManifestDigest: man.Digest.String(), ManifestMediaType: string(man.MediaType), ManifestSize: man.Size,
		Platform: platform.String(), Size: size, Created: created, Source: repoName(repo),
	}
	if err := s.record(ctx, func(tx *store.ImageTx) error { return tx.Put(rec) }); err != nil {
		return nil, err
	}
	img, err := s.loadImage(nm, rec.ManifestDigest)
	if err != nil {
		return nil, err
	}
	img.Digest, img.Platform = rec.Digest, rec.Platform
	return img, nil
}

// unpackDuringPull starts unpacking m's layers into the layer cache, each once ready[i] is closed
// (its blob stored). The channel it returns yields the outcome; nil at once when there is nothing
// to do (skip, no overlayfs, a config whose diff IDs do not pair with the layers).
func (s *Store) unpackDuringPull(ctx context.Context, nm string, m *v1.Manifest, cfg *v1.ConfigFile, ready []chan struct{}, skip bool) <-chan error {
	out := make(chan error, 1)
	if skip || len(m.Layers) == 0 || len(cfg.RootFS.DiffIDs) != len(m.Layers) || overlaySupported() != nil {
		out <- nil
		return out
	}
	img := &Image{Ref: nm, Layers: make([]Layer, len(m.Layers))}
	for i, l := range m.Layers {
		img.Layers[i] = Layer{Digest: l.Digest.String(), DiffID: cfg.RootFS.DiffIDs[i].String(), MediaType: string(l.MediaType), Size: l.Size}
	}
	go func() {
		_, err := s.prepareLayersWhen(ctx, img, func(ctx context.Context, i int) error {
			select {
			case <-ready[i]:
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		})
		out <- err
	}()
	return out
}

// putVerified stores b, which must have digest want.
func (s *Store) putVerified(ctx context.Context, b []byte, want v1.Hash) error {
	h, err := s.putBlobBytes(ctx, b)
	if err != nil {
		return err
	}
	if h != want {
		return fmt.Errorf("manifest has %s, want %s: %w", h, want, ErrDigestMismatch)
	}
	return nil
}

// choosePlatform picks want's manifest from an index, or says which platforms there are.
func choosePlatform(idx *v1.IndexManifest, want Platform, nm string) (v1.Descriptor, error) {
	var avail []string
	for _, d := range idx.Manifests {
		p := platformOf(d.Platform)
		if p.OS == "" || p.OS == "unknown" {
			// Attestations and other non-images.
			continue
		}
		if want.matches(p) && d.MediaType.IsImage() {
			return d, nil
		}
		avail = append(avail, p.String())
	}
	return v1.Descriptor{}, fmt.Errorf("%s: %w %s (available: %s)", nm, ErrPlatform, want, strings.Join(avail, ", "))
}

// fetchBlob downloads one blob into the store, retrying (and resuming) interrupted transfers.
func (s *Store) fetchBlob(ctx context.Context, fetch fetchFunc, d v1.Descriptor, kind string, prog progress, delay time.Duration) error {
	if d.Size < 0 {
		return fmt.Errorf("%s %s: declared size %d is negative", kind, d.Digest, d.Size)
	}
	bp := prog.blob(kind, d.Digest.String(), d.Size)
	var (
		skipped bool
		err     error
	)
	for attempt := 1; ; attempt++ {
		skipped, err = s.putBlob(ctx, d.Digest, d.Size, fetch, bp.add)
		var pe partialError
		if err == nil || attempt == blobAttempts || !(errors.As(err, &pe) || retryable(err)) {
			break
		}
		s.log.Warn("blob download failed, retrying", "digest", d.Digest.String(), "attempt", attempt, "err", err)
		select {
		case <-ctx.Done():
			bp.done(ctx.Err(), false)
			return ctx.Err()
		case <-time.After(delay):
		}
		delay *= 2
	}
	bp.done(err, skipped)
	return err
}

// blobFetcher GETs a blob from the registry, from offset on when the registry honours Range.
func blobFetcher(client *http.Client, repo name.Repository, h v1.Hash) fetchFunc {
	var fetch fetchFunc
	fetch = func(ctx context.Context, off int64) (io.ReadCloser, int64, error) {
		u := url.URL{Scheme: repo.Scheme(), Host: repo.RegistryStr(), Path: fmt.Sprintf("/v2/%s/blobs/%s", repo.RepositoryStr(), h)}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s: %w", h, err)
		}
		if off > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		}
		resp, err := client.Do(req)
		if err != nil {
			return nil, 0, fmt.Errorf("blob %s: %w", h, err)
		}
		switch {
		case resp.StatusCode == http.StatusOK:
			return resp.Body, 0, nil
		case resp.StatusCode == http.StatusPartialContent && off > 0 && strings.HasPrefix(resp.Header.Get("Content-Range"), fmt.Sprintf("bytes %d-", off)):
			return resp.Body, off, nil
		case off > 0:
			// The registry does not do this Range (416, or an error of its own): fetch it whole.
			resp.Body.Close()
			return fetch(ctx, 0)
		}
		defer resp.Body.Close()
		if err := transport.CheckError(resp, http.StatusOK); err != nil {
			return nil, 0, fmt.Errorf("blob %s: %w", h, err)
		}
		return nil, 0, fmt.Errorf("blob %s: unexpected status %s", h, resp.Status)
	}
	return fetch
}
