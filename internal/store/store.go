// Package store keeps knast's container records in an embedded bbolt
// database at <root>/knast.db.
//
// knast has no daemon: many short-lived knast processes (containerd may start
// dozens at once) share the file. bbolt takes an exclusive flock for a
// read-write open and a shared one for a read-only open, so the store opens
// the database for a single transaction and closes it straight away, and it
// never waits for the lock longer than the Store's timeout (or the context's
// deadline, if sooner).
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// ErrNotExist is wrapped by errors about a container that has no record.
// The wording matters: containerd matches "does not exist".
var ErrNotExist = errors.New("does not exist")

// ErrExist is wrapped by CreateContainer when the ID is already taken.
var ErrExist = errors.New("already exists")

// schemaVersion is the layout this code reads and writes. A database written
// by a newer knast is refused rather than misread.
const schemaVersion = 1

// defaultTimeout replaces a non-positive Store timeout, because bbolt treats
// 0 as "wait for the lock forever".
const defaultTimeout = 5 * time.Second

const dbName = "knast.db"

var (
	bucketContainers = []byte("containers")
	bucketMeta       = []byte("meta")
	keySchema        = []byte("schema")
)

// Container is one container's record.
type Container struct {
	ID       string `json:"id"`
	Bundle   string `json:"bundle"`
	Rootfs   string `json:"rootfs"`
	StateDir string `json:"stateDir"`
	// Pid is the container's init as seen from the host; 0 until known.
	Pid int `json:"pid,omitempty"`
	// PidStart is field 22 of /proc/<pid>/stat, guarding against pid reuse.
	PidStart uint64 `json:"pidStart,omitempty"`
	// Status is the recorded phase, for what the live process and the exec fifo cannot tell: "creating"
	// until create is done, then "created"; pause and resume record "paused" and "running". A started
	// container keeps "created": its fifo is gone, which is what says it runs.
	Status      string            `json:"status"`
	Created     time.Time         `json:"created"`
	Owner       string            `json:"owner,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// Config is the validated config.json as used at create.
	Config []byte `json:"config,omitempty"`
	// Deleter and DeleterStart name the knast process removing this container (pid and start time),
	// so that one process at a time tears it down: a second delete waits, and takes over only from a
	// deleter that died.
	Deleter      int    `json:"deleter,omitempty"`
	DeleterStart uint64 `json:"deleterStart,omitempty"`
}

// Store is a handle on <root>/knast.db. It holds no open file, so it is cheap
// to create and safe to share.
type Store struct {
	root    string
	timeout time.Duration
}

// Open returns a Store for root without touching the file system. timeout
// bounds how long each operation waits for the database lock; a value <= 0
// means a default of 5s.
func Open(root string, timeout time.Duration) *Store {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &Store{root: root, timeout: timeout}
}

// Path returns the database file's path, root/knast.db.
func (s *Store) Path() string { return filepath.Join(s.root, dbName) }

// CreateContainer stores a new record; it fails with ErrExist if c.ID is taken.
func (s *Store) CreateContainer(ctx context.Context, c Container) error {
	if err := checkID(c.ID); err != nil {
		return err
	}
	data, err := json.Marshal(&c)
	if err != nil {
		return fmt.Errorf("encode container %q: %w", c.ID, err)
	}
	return s.update(ctx, true, func(b *bolt.Bucket) error {
		if b.Get([]byte(c.ID)) != nil {
			return fmt.Errorf("container %q: %w", c.ID, ErrExist)
		}
		return b.Put([]byte(c.ID), data)
	})
}

// Container returns the record for id, or an error wrapping ErrNotExist.
func (s *Store) Container(ctx context.Context, id string) (Container, error) {
	var c Container
	err := s.view(ctx, func(b *bolt.Bucket) error {
		var err error
		c, err = load(b, id)
		return err
	})
	return c, err
}

// load decodes the record for id from b, or fails with ErrNotExist.
func load(b *bolt.Bucket, id string) (Container, error) {
	var c Container
	v := get(b, id)
	if v == nil {
		return c, fmt.Errorf("container %q: %w", id, ErrNotExist)
	}
	return c, decode(id, v, &c)
}

// UpdateContainer runs fn on the record for id and stores the result, all in
// one write transaction, so concurrent updates cannot lose each other. An
// error from fn aborts the update and is returned unchanged. fn must not
// change the ID.
func (s *Store) UpdateContainer(ctx context.Context, id string, fn func(*Container) error) error {
	return s.update(ctx, false, func(b *bolt.Bucket) error {
		c, err := load(b, id)
		if err != nil {
			return err
		}
		if err := fn(&c); err != nil {
			return err
		}
		if c.ID != id {
			return fmt.Errorf("update container %q: ID must not change (got %q)", id, c.ID)
		}
		data, err := json.Marshal(&c)
		if err != nil {
			return fmt.Errorf("encode container %q: %w", id, err)
		}
		return b.Put([]byte(id), data)
	})
}

// DeleteContainer removes the record for id only while it is the container created at created (the
// same incarnation, not one made later under the same ID); otherwise it fails with ErrNotExist.
func (s *Store) DeleteContainer(ctx context.Context, id string, created time.Time) error {
	return s.update(ctx, false, func(b *bolt.Bucket) error {
		c, err := load(b, id)
		if err != nil {
			return err
		}
		if !c.Created.Equal(created) {
			return fmt.Errorf("container %q (created %s): %w", id, created.Format(time.RFC3339Nano), ErrNotExist)
		}
		return b.Delete([]byte(id))
	})
}

// Containers returns every record sorted by ID. A database that does not
// exist yet holds no containers, which is not an error.
func (s *Store) Containers(ctx context.Context) ([]Container, error) {
	var out []Container
	err := s.view(ctx, func(b *bolt.Bucket) error {
		if b == nil {
			return nil
		}
		// bbolt iterates keys in byte order, which is the sort order of IDs.
		return b.ForEach(func(k, v []byte) error {
			var c Container
			if err := decode(string(k), v, &c); err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	if out == nil {
		out = []Container{}
	}
	return out, nil
}

// view runs fn in a read-only transaction under a shared lock. fn gets a nil
// bucket when the database file or the bucket does not exist yet; a read
// never creates the file.
func (s *Store) view(ctx context.Context, fn func(*bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store %s: %w", s.Path(), err)
	}
	// bbolt would try (and fail) to initialise an empty file opened read-only.
	// A file only ever grows from empty, and the writer initialises it under
	// the exclusive lock, so a non-empty file is safe to open and wait on.
	if fi, err := os.Stat(s.Path()); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return fn(nil)
	} else if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db, err := s.open(ctx, true)
	if err != nil {
		return err
	}
	err = db.View(func(tx *bolt.Tx) error {
		if err := checkSchema(tx, s.Path()); err != nil {
			return err
		}
		return fn(tx.Bucket(bucketContainers))
	})
	return closeDB(db, err)
}

// update runs fn in a write transaction. With create set, the root directory
// and database are created when missing; otherwise fn gets a nil bucket when
// the database or bucket does not exist, and the file is not created.
func (s *Store) update(ctx context.Context, create bool, fn func(*bolt.Bucket) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("store %s: %w", s.Path(), err)
	}
	if create {
		if err := os.MkdirAll(s.root, 0o700); err != nil {
			return fmt.Errorf("store: create root: %w", err)
		}
	} else if fi, err := os.Stat(s.Path()); errors.Is(err, fs.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return fn(nil)
	} else if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	db, err := s.open(ctx, false)
	if err != nil {
		return err
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if err := checkSchema(tx, s.Path()); err != nil {
			return err
		}
		b := tx.Bucket(bucketContainers)
		if b == nil {
			if !create {
				return fn(nil)
			}
			if err := initSchema(tx); err != nil {
				return fmt.Errorf("store %s: init schema: %w", s.Path(), err)
			}
			b = tx.Bucket(bucketContainers)
		}
		return fn(b)
	})
	return closeDB(db, err)
}

// open opens knast.db without fsync: the records describe live processes, which do not outlive a reboot
// either, so surviving power loss buys nothing; a killed knast cannot tear a commit, since bbolt writes
// pages before the meta page and the page cache keeps that order for other processes. fsync would add
// milliseconds to every create, start and delete.
func (s *Store) open(ctx context.Context, readOnly bool) (*bolt.DB, error) {
	return openDB(ctx, "store", s.Path(), s.timeout, readOnly, true)
}

// openDB opens a bbolt file, waiting for its lock no longer than timeout or ctx's deadline, whichever
// comes first; what names the database in errors.
func openDB(ctx context.Context, what, path string, timeout time.Duration, readOnly, noSync bool) (*bolt.DB, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, path, err)
	}
	byCtx := false
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, fmt.Errorf("%s %s: %w", what, path, context.DeadlineExceeded)
		}
		if left < timeout {
			timeout, byCtx = left, true
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: readOnly, NoSync: noSync, NoFreelistSync: noSync})
	if errors.Is(err, bolt.ErrTimeout) {
		if byCtx {
			// bbolt gives up a little before the deadline; say why anyway.
			err = fmt.Errorf("%w: %w", err, context.DeadlineExceeded)
		}
		return nil, fmt.Errorf("%s %s: database is locked by another process (still busy after %v): %w", what, path, timeout.Round(time.Millisecond), err)
	}
	if err != nil {
		return nil, fmt.Errorf("open %s %s: %w", what, path, err)
	}
	// The lock may have taken most of the budget; don't start work the caller has already given up on.
	if err := ctx.Err(); err != nil {
		return nil, closeDB(db, fmt.Errorf("%s %s: %w", what, path, err))
	}
	return db, nil
}

func closeDB(db *bolt.DB, err error) error {
	if cerr := db.Close(); cerr != nil && err == nil {
		return fmt.Errorf("close store %s: %w", db.Path(), cerr)
	}
	return err
}

// checkSchema refuses a database written with a newer (or unreadable) schema.
// A database without a meta bucket has never been written by knast and is
// treated as empty.
func checkSchema(tx *bolt.Tx, path string) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	raw := meta.Get(keySchema)
	if raw == nil {
		return nil
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil {
		return fmt.Errorf("store %s: bad schema version %q", path, raw)
	}
	if v > schemaVersion {
		return fmt.Errorf("store %s: schema version %d is newer than this knast supports (%d); use a newer knast", path, v, schemaVersion)
	}
	return nil
}

func initSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if meta.Get(keySchema) == nil {
		if err := meta.Put(keySchema, []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
	}
	_, err = tx.CreateBucketIfNotExists(bucketContainers)
	return err
}

// get returns id's raw record, or nil if b is nil or has no such key.
func get(b *bolt.Bucket, id string) []byte {
	if b == nil {
		return nil
	}
	return b.Get([]byte(id))
}

func decode(id string, v []byte, c *Container) error {
	if err := json.Unmarshal(v, c); err != nil {
		return fmt.Errorf("decode container %q: %w", id, err)
	}
	return nil
}

func checkID(id string) error {
	if id == "" {
		return errors.New("container ID must not be empty")
	}
	return nil
}
