package image

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
)

func TestLoginLogout(t *testing.T) {
	host, _ := newRegistry(t, basicAuth("bob", "pw"))
	authFile := filepath.Join(t.TempDir(), "sub", "auth.json")
	t.Setenv("REGISTRY_AUTH_FILE", authFile)
	t.Setenv("XDG_RUNTIME_DIR", t.TempDir())
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	ctx := context.Background()
	o := LoginOptions{Insecure: true}
	if _, err := Login(ctx, host, "bob", "wrong", o); !errors.Is(err, ErrAuth) || !strings.Contains(err.Error(), host) {
		t.Errorf("login with a wrong password: %v", err)
	}
	if _, err := os.Stat(authFile); err == nil {
		t.Error("auth file written after a refused login")
	}
	if _, err := Login(ctx, host, "", "", o); err == nil {
		t.Error("login without credentials accepted")
	}
	p, err := Login(ctx, host, "bob", "pw", o)
	if err != nil || p != authFile {
		t.Fatalf("Login = %s, %v", p, err)
	}
	var cfg struct {
		Auths map[string]struct{ Auth string } `json:"auths"`
	}
	b, _ := os.ReadFile(authFile)
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Auths[host].Auth == "" {
		t.Fatalf("auth file %s: %v", b, err)
	}
	// The keychain now finds the credentials for this registry only.
	reg, _ := name.NewRegistry(host)
	a, err := Keychain().Resolve(reg)
	if err != nil {
		t.Fatal(err)
	}
	ac, _ := a.Authorization()
	if ac.Username != "bob" || ac.Password != "pw" {
		t.Errorf("keychain gave %+v", ac)
	}
	other, _ := name.NewRegistry("other.example:5000")
	if a, _ := Keychain().Resolve(other); a != nil {
		if ac, _ := a.Authorization(); ac.Username != "" || ac.Password != "" {
			t.Errorf("credentials offered to another registry: %+v", ac)
		}
	}
	if _, err := Logout(host, o); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(authFile)
	if strings.Contains(string(b), host) {
		t.Errorf("auth file after logout: %s", b)
	}
	if _, err := Logout(host, o); err == nil {
		t.Error("second logout succeeded")
	}
}
