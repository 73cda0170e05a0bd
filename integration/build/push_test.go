//go:build linux

package buildtest

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/knast/knast/internal/testutil"
)

// --push sends the built image to a registry; another store then builds FROM it (pulled, with
// progress) and the result runs.
func TestBuildPushAndFromRegistry(t *testing.T) {
	addr := testutil.StartRegistry(t)
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
