package image

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/sys/unix"
)

// PushOptions are the options of Push.
type PushOptions struct {
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// Progress receives a line per step; nil is quiet.
	Progress io.Writer
	// RetryDelay is the first wait before retrying a failed request (default 1s).
	RetryDelay time.Duration
	// Keychain supplies credentials; nil means Keychain().
	Keychain authn.Keychain
}

// Push uploads the stored image ref (its platform manifest, config and layers) to dest ("" means
// ref itself) and returns the pushed manifest's digest. Blobs the registry already has are not
// uploaded again; when the image came from another repository of the same registry, its layers are
// mounted from there instead of uploaded.
func (s *Store) Push(ctx context.Context, ref, dest string, o PushOptions) (string, error) {
	rec, err := s.lookup(ctx, ref)
	if err != nil {
		return "", err
	}
	if dest == "" {
		dest = rec.Name
	}
	dr, err := ParseReference(dest, o.Insecure)
	if err != nil {
		return "", err
	}
	unlock, err := s.lockGC(ctx, unix.LOCK_SH)
	if err != nil {
		return "", err
	}
	defer unlock()
	var img v1.Image
	img, err = s.v1Image(rec.ManifestDigest)
	if err != nil {
		return "", fmt.Errorf("push %s: %w", rec.Name, err)
	}
	if rec.Source != "" {
		if src, err := name.NewRepository(rec.Source); err == nil && canonicalRegistry(src.RegistryStr()) == canonicalRegistry(dr.Context().RegistryStr()) && src.RepositoryStr() != dr.Context().RepositoryStr() {
			img = mountable{Image: img, from: src.Digest(rec.ManifestDigest)}
		}
	}
	kc := o.Keychain
	if kc == nil {
		kc = Keychain()
	}
	prog := newProgress(o.Progress)
	prog.line("Pushing %s to %s", rec.Name, refName(dr))
	opts := []remote.Option{
		remote.WithContext(ctx), remote.WithAuthFromKeychain(kc), remote.WithTransport(baseTransport(o.Insecure)),
		remote.WithRetryBackoff(retryBackoff(o.RetryDelay)), remote.WithRetryPredicate(retryable),
		remote.WithRetryStatusCodes(retryCodes...),
	}
	if err := remote.Write(dr, img, opts...); err != nil {
		return "", registryError(dr.Context().RegistryStr(), "push "+refName(dr), err)
	}
	prog.line("Writing manifest to image destination")
	return rec.ManifestDigest, nil
}

func canonicalRegistry(r string) string {
	if r == "docker.io" {
		return name.DefaultRegistry
	}
	return r
}

// mountable offers every layer for a cross-repository mount from the repository the image was pulled
// from; go-containerregistry's writer asks the registry to mount it and uploads only when refused.
type mountable struct {
	v1.Image
	from name.Reference
}

func (m mountable) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = &remote.MountableLayer{Layer: l, Reference: m.from}
	}
	return out, nil
}

func (m mountable) LayerByDigest(h v1.Hash) (v1.Layer, error) {
	l, err := m.Image.LayerByDigest(h)
	if err != nil {
		return nil, err
	}
	return &remote.MountableLayer{Layer: l, Reference: m.from}, nil
}

// v1Image presents a stored manifest as a go-containerregistry image backed by the store's blobs.
func (s *Store) v1Image(manifestDigest string) (v1.Image, error) {
	raw, err := s.readBlob(manifestDigest)
	if err != nil {
		return nil, err
	}
	m, err := v1.ParseManifest(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", manifestDigest, err)
	}
	mt := m.MediaType
	if mt == "" {
		mt = types.OCIManifestSchema1
	}
	return partial.CompressedToImage(&storeImage{s: s, raw: raw, m: m, mt: mt})
}

type storeImage struct {
	s   *Store
	raw []byte
	m   *v1.Manifest
	mt  types.MediaType
}

func (i *storeImage) RawManifest() ([]byte, error)        { return i.raw, nil }
func (i *storeImage) MediaType() (types.MediaType, error) { return i.mt, nil }
func (i *storeImage) RawConfigFile() ([]byte, error)      { return i.s.readBlob(i.m.Config.Digest.String()) }

func (i *storeImage) LayerByDigest(h v1.Hash) (partial.CompressedLayer, error) {
	if h == i.m.Config.Digest {
		return &storeLayer{s: i.s, d: i.m.Config}, nil
	}
	for _, l := range i.m.Layers {
		if l.Digest == h {
			return &storeLayer{s: i.s, d: l}, nil
		}
	}
	return nil, fmt.Errorf("blob %s is not part of the image", h)
}

type storeLayer struct {
	s *Store
	d v1.Descriptor
}

func (l *storeLayer) Digest() (v1.Hash, error)            { return l.d.Digest, nil }
func (l *storeLayer) Compressed() (io.ReadCloser, error)  { return l.s.OpenBlob(l.d.Digest.String()) }
func (l *storeLayer) Size() (int64, error)                { return l.d.Size, nil }
func (l *storeLayer) MediaType() (types.MediaType, error) { return l.d.MediaType, nil }
