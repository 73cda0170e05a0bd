package store

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// helperEnv makes the test binary act as a helper process (see TestMain), so
// that flock contention is between real processes, not goroutines.
const helperEnv = "KNAST_STORE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "incr":
		if err := helperIncr(os.Getenv("ROOT"), os.Getenv("ID"), os.Getenv("N")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hold":
		if err := helperHold(os.Getenv("DB")); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode")
		os.Exit(2)
	}
}

// helperIncr increments Annotations["count"] n times, one transaction each.
func helperIncr(root, id, nStr string) error {
	n, err := strconv.Atoi(nStr)
	if err != nil {
		return err
	}
	s := Open(root, 60*time.Second)
	for range n {
		err := s.UpdateContainer(context.Background(), id, func(c *Container) error {
			v, _ := strconv.Atoi(c.Annotations["count"])
			if c.Annotations == nil {
				c.Annotations = map[string]string{}
			}
			c.Annotations["count"] = strconv.Itoa(v + 1)
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// helperHold keeps the database open read-write (exclusive flock) until
// stdin is closed.
func helperHold(path string) error {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 10 * time.Second})
	if err != nil {
		return err
	}
	defer db.Close()
	fmt.Println("ready")
	_, err = io.Copy(io.Discard, os.Stdin)
	return err
}

func helperCmd(t *testing.T, mode string, env ...string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	return cmd
}

func sample(id string) Container {
	return Container{
		ID:          id,
		Bundle:      "/b/" + id,
		Rootfs:      "/b/" + id + "/rootfs",
		StateDir:    "/run/knast/" + id,
		Pid:         1234,
		PidStart:    987654321,
		Status:      "created",
		Created:     time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC),
		Owner:       "root",
		Annotations: map[string]string{"a": "b"},
		Config:      []byte(`{"ociVersion":"1.3.0"}`),
	}
}

func TestCRUD(t *testing.T) {
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	s := Open(root, time.Second)
	if got, want := s.Path(), filepath.Join(root, "knast.db"); got != want {
		t.Fatalf("Path() = %q, want %q", got, want)
	}

	ids := []string{"zeta", "alpha", "mid"}
	for _, id := range ids {
		if err := s.CreateContainer(ctx, sample(id)); err != nil {
			t.Fatalf("CreateContainer(%s): %v", id, err)
		}
	}
	for _, tc := range []struct {
		path string
		mode fs.FileMode
	}{{root, 0o700 | fs.ModeDir}, {s.Path(), 0o600}} {
		fi, err := os.Stat(tc.path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != tc.mode {
			t.Errorf("%s mode = %v, want %v", tc.path, fi.Mode(), tc.mode)
		}
	}

	got, err := s.Container(ctx, "mid")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sample("mid"), got); diff != "" {
		t.Errorf("Container(mid) mismatch (-want +got):\n%s", diff)
	}

	err = s.UpdateContainer(ctx, "mid", func(c *Container) error {
		c.Status = "running"
		c.Pid = 42
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := sample("mid")
	want.Status, want.Pid = "running", 42
	got, err = s.Container(ctx, "mid")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("after update (-want +got):\n%s", diff)
	}

	all, err := s.Containers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var gotIDs []string
	for _, c := range all {
		gotIDs = append(gotIDs, c.ID)
	}
	if diff := cmp.Diff([]string{"alpha", "mid", "zeta"}, gotIDs); diff != "" {
		t.Errorf("Containers() order (-want +got):\n%s", diff)
	}

	for _, id := range ids {
		if err := s.DeleteContainer(ctx, id, sample(id).Created); err != nil {
			t.Fatalf("DeleteContainer(%s): %v", id, err)
		}
	}
	all, err = s.Containers(ctx)
	if err != nil || all == nil || len(all) != 0 {
		t.Fatalf("Containers() after delete = %v, %v; want empty, nil", all, err)
	}
}

func TestErrors(t *testing.T) {
	ctx := context.Background()
	noop := func(*Container) error { return nil }
	tests := []struct {
		name     string
		seed     bool // create "exists" first; otherwise no db file exists
		op       func(*Store) error
		is       error
		contains string
	}{
		{"duplicate create", true, func(s *Store) error { return s.CreateContainer(ctx, sample("exists")) }, ErrExist, `container "exists": already exists`},
		{"get missing", true, func(s *Store) error { _, err := s.Container(ctx, "nope"); return err }, ErrNotExist, `container "nope": does not exist`},
		{"update missing", true, func(s *Store) error { return s.UpdateContainer(ctx, "nope", noop) }, ErrNotExist, `container "nope": does not exist`},
		{"delete missing", true, func(s *Store) error { return s.DeleteContainer(ctx, "nope", sample("nope").Created) }, ErrNotExist, `container "nope": does not exist`},
		{"get without db", false, func(s *Store) error { _, err := s.Container(ctx, "nope"); return err }, ErrNotExist, `container "nope": does not exist`},
		{"update without db", false, func(s *Store) error { return s.UpdateContainer(ctx, "nope", noop) }, ErrNotExist, `container "nope": does not exist`},
		{"delete without db", false, func(s *Store) error { return s.DeleteContainer(ctx, "nope", sample("nope").Created) }, ErrNotExist, `container "nope": does not exist`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			s := Open(root, time.Second)
			if tc.seed {
				if err := s.CreateContainer(ctx, sample("exists")); err != nil {
					t.Fatal(err)
				}
			}
			err := tc.op(s)
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.is)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("err = %q, want it to contain %q", err, tc.contains)
			}
			if !tc.seed {
				if _, err := os.Stat(root); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("operation on missing db created %s (stat err %v)", root, err)
				}
			}
		})
	}
}

func TestReadsWithoutDatabase(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, root string)
	}{
		{"no root", func(*testing.T, string) {}},
		{"empty root", func(t *testing.T, root string) {
			if err := os.MkdirAll(root, 0o700); err != nil {
				t.Fatal(err)
			}
		}},
		// A writer has created the file but not yet initialised it.
		{"zero-length file", func(t *testing.T, root string) {
			if err := os.MkdirAll(root, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, "knast.db"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			tc.setup(t, root)
			before, _ := os.ReadDir(root)
			s := Open(root, time.Second)
			all, err := s.Containers(ctx)
			if err != nil || all == nil || len(all) != 0 {
				t.Fatalf("Containers() = %#v, %v; want empty slice, nil", all, err)
			}
			if _, err := s.Container(ctx, "x"); !errors.Is(err, ErrNotExist) {
				t.Fatalf("Container(x) err = %v, want ErrNotExist", err)
			}
			after, _ := os.ReadDir(root)
			if len(before) != len(after) {
				t.Errorf("reads changed %s: %d entries before, %d after", root, len(before), len(after))
			}
			// The first write must still work from this state.
			if err := s.CreateContainer(ctx, sample("x")); err != nil {
				t.Fatalf("CreateContainer after reads: %v", err)
			}
			if _, err := s.Container(ctx, "x"); err != nil {
				t.Fatalf("Container(x) after create: %v", err)
			}
		})
	}
}

func TestUpdateAborts(t *testing.T) {
	ctx := context.Background()
	errBoom := errors.New("boom")
	tests := []struct {
		name     string
		fn       func(*Container) error
		is       error
		contains string
	}{
		{"fn error", func(c *Container) error { c.Status = "stopped"; return errBoom }, errBoom, "boom"},
		{"id change", func(c *Container) error { c.ID = "other"; c.Status = "stopped"; return nil }, nil, "ID must not change"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Open(t.TempDir(), time.Second)
			if err := s.CreateContainer(ctx, sample("c")); err != nil {
				t.Fatal(err)
			}
			err := s.UpdateContainer(ctx, "c", tc.fn)
			if err == nil || !strings.Contains(err.Error(), tc.contains) {
				t.Fatalf("err = %v, want containing %q", err, tc.contains)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want errors.Is %v", err, tc.is)
			}
			got, err := s.Container(ctx, "c")
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(sample("c"), got); diff != "" {
				t.Errorf("aborted update changed the record (-want +got):\n%s", diff)
			}
			if all, _ := s.Containers(ctx); len(all) != 1 {
				t.Errorf("have %d records, want 1", len(all))
			}
		})
	}
}

func TestEmptyIDRejected(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root")
	err := Open(root, time.Second).CreateContainer(context.Background(), Container{})
	if err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("err = %v, want an empty-ID error", err)
	}
}

func TestContextDone(t *testing.T) {
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		is   error
	}{
		{"canceled", canceled, context.Canceled},
		{"deadline passed", expired, context.DeadlineExceeded},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			s := Open(root, time.Second)
			if err := s.CreateContainer(tc.ctx, sample("c")); !errors.Is(err, tc.is) {
				t.Errorf("CreateContainer err = %v, want %v", err, tc.is)
			}
			// Without a database file too, the context wins over "does not exist".
			if err := s.DeleteContainer(tc.ctx, "c", sample("c").Created); !errors.Is(err, tc.is) {
				t.Errorf("DeleteContainer (no db) err = %v, want %v", err, tc.is)
			}
			if _, err := os.Stat(s.Path()); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("db file exists after a cancelled create (stat err %v)", err)
			}
			if err := s.CreateContainer(context.Background(), sample("c")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Container(tc.ctx, "c"); !errors.Is(err, tc.is) {
				t.Errorf("Container err = %v, want %v", err, tc.is)
			}
			if _, err := s.Containers(tc.ctx); !errors.Is(err, tc.is) {
				t.Errorf("Containers err = %v, want %v", err, tc.is)
			}
		})
	}
}

func TestSchemaVersion(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name     string
		version  string
		contains string // empty: the database must be usable
	}{
		{"current", strconv.Itoa(schemaVersion), ""},
		{"newer", strconv.Itoa(schemaVersion + 1), "newer than this knast supports"},
		{"garbage", "v?", "bad schema version"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := Open(t.TempDir(), time.Second)
			if err := s.CreateContainer(ctx, sample("c")); err != nil {
				t.Fatal(err)
			}
			db, err := bolt.Open(s.Path(), 0o600, &bolt.Options{Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				return tx.Bucket(bucketMeta).Put(keySchema, []byte(tc.version))
			})
			if cerr := db.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}

			ops := map[string]func() error{
				"Create":     func() error { return s.CreateContainer(ctx, sample("d")) },
				"Container":  func() error { _, err := s.Container(ctx, "c"); return err },
				"Containers": func() error { _, err := s.Containers(ctx); return err },
				"Update":     func() error { return s.UpdateContainer(ctx, "c", func(*Container) error { return nil }) },
				"Delete":     func() error { return s.DeleteContainer(ctx, "c", sample("c").Created) },
			}
			for _, name := range []string{"Create", "Container", "Containers", "Update", "Delete"} {
				err := ops[name]()
				switch {
				case tc.contains == "" && err != nil:
					t.Errorf("%s: %v", name, err)
				case tc.contains != "" && (err == nil || !strings.Contains(err.Error(), tc.contains) || !strings.Contains(err.Error(), s.Path())):
					t.Errorf("%s err = %v, want it to name %s and contain %q", name, err, s.Path(), tc.contains)
				}
			}
		})
	}
}

// TestConcurrentUpdatesAcrossProcesses checks that read-modify-write in
// UpdateContainer loses no update when several processes contend for the
// database's flock.
func TestConcurrentUpdatesAcrossProcesses(t *testing.T) {
	const procs, perProc = 8, 50
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "root")
	s := Open(root, 10*time.Second)
	if err := s.CreateContainer(ctx, sample("ctr")); err != nil {
		t.Fatal(err)
	}

	var wg sync.WaitGroup
	errs := make([]error, procs)
	for i := range procs {
		cmd := helperCmd(t, "incr", "ROOT="+root, "ID=ctr", "N="+strconv.Itoa(perProc))
		wg.Go(func() {
			if out, err := cmd.CombinedOutput(); err != nil {
				errs[i] = fmt.Errorf("helper %d: %w: %s", i, err, out)
			}
		})
	}
	// Concurrent readers must keep working while the writers run.
	wg.Go(func() {
		for range 20 {
			if _, err := s.Containers(ctx); err != nil {
				t.Errorf("Containers() during updates: %v", err)
				return
			}
		}
	})
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}

	c, err := s.Container(ctx, "ctr")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Annotations["count"], strconv.Itoa(procs*perProc); got != want {
		t.Fatalf("count = %s, want %s (lost updates)", got, want)
	}
	if c.Annotations["a"] != "b" {
		t.Errorf("other annotations lost: %v", c.Annotations)
	}
}

// TestLockedDatabaseTimesOut holds the database open read-write in another
// process and checks that operations give up with a "locked" error instead
// of hanging.
func TestLockedDatabaseTimesOut(t *testing.T) {
	root := t.TempDir()
	seed := Open(root, time.Second)
	if err := seed.CreateContainer(context.Background(), sample("c")); err != nil {
		t.Fatal(err)
	}

	cmd := helperCmd(t, "hold", "DB="+seed.Path())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("holder: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("holder did not get ready: %q, %v", line, err)
	}

	const short = 300 * time.Millisecond
	type op func(ctx context.Context, s *Store) error
	ops := map[string]op{
		"Create":     func(ctx context.Context, s *Store) error { return s.CreateContainer(ctx, sample("d")) },
		"Container":  func(ctx context.Context, s *Store) error { _, err := s.Container(ctx, "c"); return err },
		"Containers": func(ctx context.Context, s *Store) error { _, err := s.Containers(ctx); return err },
		"Update": func(ctx context.Context, s *Store) error {
			return s.UpdateContainer(ctx, "c", func(*Container) error { return nil })
		},
		"Delete": func(ctx context.Context, s *Store) error { return s.DeleteContainer(ctx, "c", sample("c").Created) },
	}
	limits := []struct {
		name         string
		storeTimeout time.Duration
		ctxTimeout   time.Duration // 0: no deadline
	}{
		{"store timeout", short, 0},
		{"ctx deadline sooner", time.Minute, short},
	}
	for _, lim := range limits {
		for _, name := range []string{"Create", "Container", "Containers", "Update", "Delete"} {
			t.Run(lim.name+"/"+name, func(t *testing.T) {
				ctx := context.Background()
				if lim.ctxTimeout > 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, lim.ctxTimeout)
					defer cancel()
				}
				s := Open(root, lim.storeTimeout)
				start := time.Now()
				err := ops[name](ctx, s)
				elapsed := time.Since(start)
				if err == nil {
					t.Fatal("operation succeeded while the database was locked")
				}
				if !strings.Contains(err.Error(), "locked") || !strings.Contains(err.Error(), s.Path()) {
					t.Errorf("err = %q, want it to say locked and name %s", err, s.Path())
				}
				if !errors.Is(err, bolt.ErrTimeout) {
					t.Errorf("err = %v, want errors.Is bolt.ErrTimeout", err)
				}
				if got, want := errors.Is(err, context.DeadlineExceeded), lim.ctxTimeout > 0; got != want {
					t.Errorf("errors.Is(err, context.DeadlineExceeded) = %v, want %v (err %v)", got, want, err)
				}
				if elapsed > short+2*time.Second {
					t.Errorf("took %v to give up, want about %v", elapsed, short)
				}
			})
		}
	}
}

// DeleteContainer removes only the incarnation it names: a container created again under the same ID
// survives a late delete of the one before it.
func TestDeleteContainer(t *testing.T) {
	ctx := context.Background()
	s := Open(filepath.Join(t.TempDir(), "root"), time.Second)
	old := sample("c1")
	if err := s.CreateContainer(ctx, old); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContainer(ctx, "c1", old.Created); err != nil {
		t.Fatalf("delete of the current incarnation: %v", err)
	}
	if err := s.DeleteContainer(ctx, "c1", old.Created); !errors.Is(err, ErrNotExist) {
		t.Fatalf("second delete: %v, want ErrNotExist", err)
	}
	again := sample("c1")
	again.Created = old.Created.Add(time.Nanosecond)
	again.Deleter, again.DeleterStart = 42, 4242
	if err := s.CreateContainer(ctx, again); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteContainer(ctx, "c1", old.Created); !errors.Is(err, ErrNotExist) {
		t.Fatalf("late delete of the earlier incarnation: %v, want ErrNotExist", err)
	}
	got, err := s.Container(ctx, "c1")
	if err != nil {
		t.Fatalf("the new incarnation is gone: %v", err)
	}
	if got.Deleter != 42 || got.DeleterStart != 4242 {
		t.Errorf("deleter %d/%d, want 42/4242", got.Deleter, got.DeleterStart)
	}
}
