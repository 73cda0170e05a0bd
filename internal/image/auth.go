package image

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/docker/cli/cli/config/configfile"
	"github.com/docker/cli/cli/config/types"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// dockerHubAuthKey is the key Docker's config uses for Docker Hub.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// Keychain returns the credentials knast uses, per registry, first found wins:
// $REGISTRY_AUTH_FILE, podman's ${XDG_RUNTIME_DIR}/containers/auth.json, then Docker's config
// (~/.docker/config.json or $DOCKER_CONFIG, with its credential helpers). Each credential is handed
// only to the transport of the registry it was found for.
func Keychain() authn.Keychain {
	var kcs []authn.Keychain
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		kcs = append(kcs, fileKeychain{path: p})
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		kcs = append(kcs, fileKeychain{path: filepath.Join(d, "containers", "auth.json")})
	}
	return authn.NewMultiKeychain(append(kcs, authn.DefaultKeychain)...)
}

// fileKeychain reads one auth file in Docker's config format (podman's auth.json is the same), with
// its credHelpers and credsStore.
type fileKeychain struct{ path string }

func (k fileKeychain) Resolve(target authn.Resource) (authn.Authenticator, error) {
	f, err := os.Open(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return authn.Anonymous, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	cf := configfile.New(k.path)
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", k.path, err)
	}
	for _, key := range authKeys(target.RegistryStr()) {
		ac, err := cf.GetAuthConfig(key)
		if err != nil {
			return nil, fmt.Errorf("auth file %s: %s: %w", k.path, key, err)
		}
		if ac.Username != "" || ac.Password != "" || ac.Auth != "" || ac.IdentityToken != "" || ac.RegistryToken != "" {
			return authn.FromConfig(authn.AuthConfig{Username: ac.Username, Password: ac.Password, Auth: ac.Auth, IdentityToken: ac.IdentityToken, RegistryToken: ac.RegistryToken}), nil
		}
	}
	return authn.Anonymous, nil
}

// authKeys are the keys an auth file may file a registry under (podman writes docker.io, Docker
// its v1 URL).
func authKeys(reg string) []string {
	if reg == name.DefaultRegistry || reg == "docker.io" || reg == dockerHubAuthKey {
		return []string{dockerHubAuthKey, "docker.io", name.DefaultRegistry}
	}
	return []string{reg, "https://" + reg, "http://" + reg}
}

// baseTransport is the HTTP transport under auth and retries; insecure skips TLS verification.
func baseTransport(insecure bool) *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	if insecure {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // --tls-verify=false asks for it
	}
	return t
}

// retryBackoff is the wait before each retry of a request that failed with a 5xx, 429 or a network
// error: delay, then doubling, three retries.
func retryBackoff(delay time.Duration) transport.Backoff {
	if delay <= 0 {
		delay = time.Second
	}
	return transport.Backoff{Duration: delay, Factor: 2, Jitter: 0.1, Steps: 4}
}

var retryCodes = []int{http.StatusRequestTimeout, http.StatusTooManyRequests, http.StatusInternalServerError,
	http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout}

// retryable reports whether a request error is worth another try.
func retryable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var te *transport.Error
	if errors.As(err, &te) {
		return te.Temporary()
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// retrying wraps a transport in go-containerregistry's retry transport.
func retrying(t http.RoundTripper, delay time.Duration) http.RoundTripper {
	return transport.NewRetry(t, transport.WithRetryBackoff(retryBackoff(delay)),
		transport.WithRetryPredicate(retryable), transport.WithRetryStatusCodes(retryCodes...))
}

// authTransport does the registry's auth handshake (basic or bearer token) with the keychain's
// credentials for repo's registry and returns a transport that attaches them to that registry's
// requests only.
func authTransport(ctx context.Context, repo name.Repository, kc authn.Keychain, insecure bool, delay time.Duration, scopes ...string) (http.RoundTripper, error) {
	auth, err := authn.Resolve(ctx, kc, repo.Registry)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	t, err := transport.NewWithContext(ctx, repo.Registry, auth, retrying(baseTransport(insecure), delay), scopes)
	if err != nil {
		return nil, registryError(repo.RegistryStr(), "", err)
	}
	return t, nil
}

// registryError turns registry failures into messages that name the registry and say what to do.
func registryError(registry, what string, err error) error {
	prefix := "registry " + registry
	if what != "" {
		prefix = what + ": registry " + registry
	}
	var te *transport.Error
	if errors.As(err, &te) {
		auth := te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden
		unknown := te.StatusCode == http.StatusNotFound
		for _, d := range te.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				auth = true
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				unknown = true
			}
		}
		switch {
		case auth:
			return fmt.Errorf("%s: %w (HTTP %d; log in with `knast login %s`): %w", prefix, ErrAuth, te.StatusCode, registry, err)
		case unknown:
			return fmt.Errorf("%s: %w: %w", prefix, ErrUnknownImage, err)
		}
	}
	return fmt.Errorf("%s: %w", prefix, err)
}

// LoginOptions are the options of Login and Logout.
type LoginOptions struct {
	// Insecure allows plain HTTP and unverified TLS (--tls-verify=false).
	Insecure bool
	// AuthFile is the file to write; "" means $REGISTRY_AUTH_FILE, else Docker's config.json.
	AuthFile string
}

// AuthFile returns the file login writes: o.AuthFile, $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json
// or ~/.docker/config.json.
func (o LoginOptions) authFile() (string, error) {
	if o.AuthFile != "" {
		return o.AuthFile, nil
	}
	if p := os.Getenv("REGISTRY_AUTH_FILE"); p != "" {
		return p, nil
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("auth file: %w", err)
	}
	return filepath.Join(home, ".docker", "config.json"), nil
}

func loadAuthFile(path string) (*configfile.ConfigFile, error) {
	cf := configfile.New(path)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return cf, nil
	}
	if err != nil {
		return nil, fmt.Errorf("auth file: %w", err)
	}
	defer f.Close()
	if err := cf.LoadFromReader(f); err != nil {
		return nil, fmt.Errorf("auth file %s: %w", path, err)
	}
	return cf, nil
}

func registryKey(registry string, insecure bool) (name.Registry, string, error) {
	var opts []name.Option
	if insecure {
		opts = append(opts, name.Insecure)
	}
	reg, err := name.NewRegistry(registry, opts...)
	if err != nil {
		return name.Registry{}, "", fmt.Errorf("registry %q: %w", registry, err)
	}
	key := reg.RegistryStr()
	if key == name.DefaultRegistry {
		key = dockerHubAuthKey
	}
	return reg, key, nil
}

// Login checks user and password against registry's /v2/ endpoint (through its basic or token
// auth) and, when accepted, stores them in the auth file (or the file's credential helper). It
// returns the file written.
func Login(ctx context.Context, registry, user, password string, o LoginOptions) (string, error) {
	if user == "" || password == "" {
		return "", errors.New("login: a username and a password are required")
	}
	reg, key, err := registryKey(registry, o.Insecure)
	if err != nil {
		return "", err
	}
	auth := authn.FromConfig(authn.AuthConfig{Username: user, Password: password})
	t, err := transport.NewWithContext(ctx, reg, auth, baseTransport(o.Insecure), []string{})
	if err != nil {
		return "", registryError(reg.RegistryStr(), "login", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, reg.Scheme()+"://"+reg.RegistryStr()+"/v2/", nil)
	if err != nil {
		return "", fmt.Errorf("login %s: %w", registry, err)
	}
	resp, err := (&http.Client{Transport: t}).Do(req)
	if err != nil {
		return "", fmt.Errorf("login %s: %w", reg.RegistryStr(), err)
	}
	defer resp.Body.Close()
	if err := transport.CheckError(resp, http.StatusOK); err != nil {
		return "", registryError(reg.RegistryStr(), "login", err)
	}
	path, err := o.authFile()
	if err != nil {
		return "", err
	}
	cf, err := loadAuthFile(path)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return "", fmt.Errorf("auth file: %w", err)
	}
	if err := cf.GetCredentialsStore(key).Store(types.AuthConfig{Username: user, Password: password, ServerAddress: key}); err != nil {
		return "", fmt.Errorf("store credentials for %s in %s: %w", key, path, err)
	}
	if err := cf.Save(); err != nil {
		return "", fmt.Errorf("auth file %s: %w", path, err)
	}
	return path, nil
}

// Logout removes registry's credentials from the auth file (and its credential helper).
func Logout(registry string, o LoginOptions) (string, error) {
	_, key, err := registryKey(registry, o.Insecure)
	if err != nil {
		return "", err
	}
	path, err := o.authFile()
	if err != nil {
		return "", err
	}
	cf, err := loadAuthFile(path)
	if err != nil {
		return "", err
	}
	found := false
	for _, k := range authKeys(key) {
		if _, ok := cf.AuthConfigs[k]; ok {
			found = true
			delete(cf.AuthConfigs, k)
		}
	}
	if !found && cf.CredentialsStore == "" && cf.CredentialHelpers[key] == "" {
		return "", fmt.Errorf("logout: not logged in to %s (%s)", registry, path)
	}
	if cf.CredentialsStore != "" || cf.CredentialHelpers[key] != "" {
		if err := cf.GetCredentialsStore(key).Erase(key); err != nil {
			return "", fmt.Errorf("logout %s: credential helper: %w", registry, err)
		}
	}
	if err := cf.Save(); err != nil {
		return "", fmt.Errorf("auth file %s: %w", path, err)
	}
	return path, nil
}
