//go:build linux

package container

import (
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStartSleep starts sleep as a child of the test, killed and reaped at cleanup.
func procStartSleep(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(path, "10")
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func procCopyFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestProcStartTime(t *testing.T) {
	self, err := ProcStartTime(os.Getpid())
	if err != nil {
		t.Fatalf("ProcStartTime(self): %v", err)
	}
	if self == 0 {
		t.Error("own start time is 0")
	}
	odd := filepath.Join(t.TempDir(), "a) b")
	procCopyFile(t, "/bin/sleep", odd)

	tests := []struct {
		name string
		path string
	}{
		{"sleep", "/bin/sleep"},
		// comm "a) b": fields must be counted from the last ')'.
		{"comm with space and paren", odd},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := procStartSleep(t, tt.path)
			pid := cmd.Process.Pid
			start, err := ProcStartTime(pid)
			if err != nil {
				t.Fatalf("ProcStartTime: %v", err)
			}
			if start < self {
				t.Errorf("child start %d before own start %d", start, self)
			}
			stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
			if err != nil {
				t.Fatal(err)
			}
			if tt.path == odd && !strings.Contains(string(stat), "(a) b)") {
				t.Fatalf("comm not as expected: %s", stat)
			}
			if !ProcAlive(pid, start) {
				t.Error("running child not alive")
			}
			if ProcAlive(pid, start+1) {
				t.Error("child alive with a wrong start time")
			}
		})
	}
}

func TestProcStartTimeErrors(t *testing.T) {
	for _, pid := range []int{0, -1, 1 << 30} {
		if _, err := ProcStartTime(pid); err == nil {
			t.Errorf("ProcStartTime(%d) succeeded", pid)
		}
		if ProcAlive(pid, 0) {
			t.Errorf("ProcAlive(%d) = true", pid)
		}
	}
}

func TestProcParseStat(t *testing.T) {
	tail := func(state string, start string) string {
		// Fields 3..52 after comm; starttime is field 22.
		f := make([]string, 50)
		for i := range f {
			f[i] = "0"
		}
		f[0] = state
		f[22-3] = start
		return strings.Join(f, " ")
	}
	tests := []struct {
		name      string
		line      string
		wantState byte
		wantStart uint64
		wantErr   string
	}{
		{"plain", "12 (sleep) " + tail("S", "123456"), 'S', 123456, ""},
		{"comm with paren and space", "12 (a) b) " + tail("R", "77"), 'R', 77, ""},
		{"comm of parens", "12 ()) ) () " + tail("Z", "5"), 'Z', 5, ""},
		{"comm with newline", "12 (x\ny) " + tail("D", "9") + "\n", 'D', 9, ""},
		{"no paren", "12 sleep S 1 2 3", 0, 0, "no ')'"},
		{"too short", "12 (sleep) S 1 2 3", 0, 0, "fields after comm"},
		{"bad start", "12 (sleep) " + tail("S", "x1"), 0, 0, "bad start time"},
		{"bad state", "12 (sleep) " + tail("SS", "1"), 0, 0, "bad state"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			state, start, err := procParseStat([]byte(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if state != tt.wantState || start != tt.wantStart {
				t.Errorf("got %c %d, want %c %d", state, start, tt.wantState, tt.wantStart)
			}
		})
	}
}

func TestProcAliveZombie(t *testing.T) {
	cmd := procStartSleep(t, "/bin/sleep")
	pid := cmd.Process.Pid
	start, err := ProcStartTime(pid)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(os.Kill); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for ProcAlive(pid, start) {
		if time.Now().After(deadline) {
			t.Fatal("killed child still alive")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Not reaped yet: it is a zombie, and that counts as dead.
	state, got, err := procStat(pid)
	if err != nil {
		t.Fatalf("zombie gone before reaping: %v", err)
	}
	if state != 'Z' || got != start {
		t.Errorf("state %c start %d, want Z %d", state, got, start)
	}
}

func TestWaitExit(t *testing.T) {
	tests := []struct {
		name string
		wait func(ctx context.Context, pid int, start uint64) error
	}{
		{"WaitExit", WaitExit},
		{"poll fallback", procWaitPoll},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/exit", func(t *testing.T) {
			cmd := procStartSleep(t, "/bin/sleep")
			pid := cmd.Process.Pid
			start, err := ProcStartTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- tt.wait(context.Background(), pid, start) }()
			select {
			case err := <-done:
				t.Fatalf("returned before the exit: %v", err)
			case <-time.After(100 * time.Millisecond):
			}
			killed := time.Now()
			cmd.Process.Signal(os.Kill)
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("wait: %v", err)
				}
				if d := time.Since(killed); d > time.Second {
					t.Errorf("returned %v after the exit", d)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("did not return after the exit")
			}
		})
		t.Run(tt.name+"/cancel", func(t *testing.T) {
			cmd := procStartSleep(t, "/bin/sleep")
			pid := cmd.Process.Pid
			start, err := ProcStartTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			defer cancel()
			began := time.Now()
			if err := tt.wait(ctx, pid, start); !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("wait = %v, want context.DeadlineExceeded", err)
			}
			if d := time.Since(began); d > time.Second {
				t.Errorf("cancel took %v", d)
			}
			if !ProcAlive(pid, start) {
				t.Error("child died")
			}
		})
		t.Run(tt.name+"/gone", func(t *testing.T) {
			cmd := procStartSleep(t, "/bin/sleep")
			pid := cmd.Process.Pid
			start, err := ProcStartTime(pid)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			// A wrong start time is a different process: nothing to wait for.
			if err := tt.wait(ctx, pid, start+1); err != nil {
				t.Errorf("wait with wrong start = %v", err)
			}
			cmd.Process.Kill()
			cmd.Wait()
			if err := tt.wait(ctx, pid, start); err != nil {
				t.Errorf("wait for a reaped process = %v", err)
			}
		})
	}
}
