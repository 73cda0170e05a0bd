//go:build linux

package buildtest

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startRegistry runs Debian's docker-registry on a free loopback port until the test ends.
func startRegistry(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("docker-registry"); err != nil {
		t.Fatalf("docker-registry is needed (Debian package docker-registry): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	cfg := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n  secret: knast-build-test\n", filepath.Join(dir, "data"), addr)
	cfgPath := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("docker-registry", "serve", cfgPath)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(20 * time.Second); ; {
		resp, err := http.Get("http://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return addr
		}
		if time.Now().After(deadline) {
			t.Fatalf("docker-registry on %s did not answer: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// --push sends the built image to a registry; another store then builds FROM it (pulled, with
// progress) and the result runs.
func TestBuildPushAndFromRegistry(t *testing.T) {
	addr := startRegistry(t)
	ref := addr + "/knast-build-it/pushed:1"
	dir := writeContext(t, map[string]string{"Dockerfile": "FROM " + baseImage + "\nRUN echo pushed > /pushed.txt\n"})
	out, err := knast(t, "build", "-t", ref, "--push", "--tls-verify=false", dir)
	if err != nil {
		t.Fatalf("build --push: %v\n%s", err, out)
	}
	t.Cleanup(func() { knast(t, "image", "rm", ref) })

	// A fresh store has only the registry to get the base from.
	fresh := t.TempDir()
	dir = writeContext(t, map[string]string{"Dockerfile": "FROM " + ref + "\nRUN cat /pushed.txt > /again.txt\nCMD [\"cat\", \"/again.txt\"]\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	kn := func(args ...string) (string, error) {
		b, err := exec.CommandContext(ctx, knastBin, append([]string{"--storage", fresh, "--root", stateRoot}, args...)...).CombinedOutput()
		return string(b), err
	}
	out, err = kn("build", "-t", "localhost/knast-build-it/from-registry", "--tls-verify=false", dir)
	if err != nil {
		t.Fatalf("build FROM the registry: %v\n%s", err, out)
	}
	if !strings.Contains(out, "Pulling "+ref) {
		t.Errorf("no pull shown:\n%s", out)
	}
	out, err = kn("run", "--rm", "--image", "localhost/knast-build-it/from-registry")
	if err != nil || out != "pushed\n" {
		t.Errorf("run: %v, output %q", err, out)
	}
	// A base image the registry does not have is an error naming it.
	dir = writeContext(t, map[string]string{"Dockerfile": "FROM " + addr + "/knast-build-it/absent:1\n"})
	if out, err := kn("build", "--tls-verify=false", dir); err == nil || !strings.Contains(out, "knast-build-it/absent") {
		t.Errorf("a build FROM an absent image: %v\n%s", err, out)
	}
}
