//go:build linux

package hardening

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/knast/knast/internal/store"
	"github.com/knast/knast/internal/testutil"
)

// TestKillCreatingContainer: a container whose create has not recorded its init yet (status
// "creating", pid 0: another client's create in progress, or one that crashed) must not make
// `knast kill` signal pid 0, which is kill's whole process group (the shell or engine that called
// it). The concurrent-client test found this; here it is made deterministic by writing the record.
func TestKillCreatingContainer(t *testing.T) {
	e := newEnv(t)
	bundle := e.bundle("true")
	cfg, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	const id = "kill-creating"
	st := store.Open(e.root, 5*time.Second)
	if err := st.CreateContainer(context.Background(), store.Container{ID: id, Bundle: bundle, Rootfs: filepath.Join(bundle, "rootfs"),
		StateDir: filepath.Join(e.root, id), Status: "creating", Created: time.Now(), Config: cfg}); err != nil {
		t.Fatal(err)
	}
	defer e.run("delete", "--force", id)
	for _, args := range [][]string{{"kill", id, "KILL"}, {"kill", "--all", id, "KILL"}} {
		// A bystander in knast's process group, as the caller of a CLI would be.
		bystander := exec.Command("sleep", "60")
		bystander.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := bystander.Start(); err != nil {
			t.Fatal(err)
		}
		p, _ := testutil.LiveProc(bystander.Process.Pid)
		cmd := e.command(e.ctx, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pgid: bystander.Process.Pid}
		r := finish(cmd, args, cmd.Run, e.dir)
		now, alive := testutil.LiveProc(bystander.Process.Pid)
		bystander.Process.Kill()
		bystander.Wait()
		if !alive || now.Start != p.Start {
			t.Errorf("knast %v on a creating container killed its own process group (knast: %s)", args, r)
		} else if r.code != 0 && !cleanError(r.stderr) {
			t.Errorf("knast %v on a creating container: not a named state error: %s", args, r)
		}
	}
}
