package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

const networksDBName = "networks.db"

var (
	bucketNetworks    = []byte("networks")
	bucketAttachments = []byte("attachments")
)

// Record is one stored value under its key. The network package owns the encoding of Data (JSON); the
// store only keeps the bytes, so it imports no knast package.
type Record struct {
	Key  string
	Data []byte
}

// NetworkStore is a handle on DIR/networks.db: the networks and their attachments, whose addresses are
// the IPAM leases. Like Store it holds no open file; every operation opens the database for one
// transaction. A read-write open takes bbolt's exclusive flock, so NetworkStore.Update and
// NetworkStore.Locked serialise every knast process that changes networks.
type NetworkStore struct {
	dir     string
	timeout time.Duration
}

// OpenNetworks returns a NetworkStore for dir without touching the file system; timeout bounds the wait
// for the database lock (<= 0 means 5s).
func OpenNetworks(dir string, timeout time.Duration) *NetworkStore {
	if timeout <= 0 {
		timeout = defaultTimeout
	}
	return &NetworkStore{dir: dir, timeout: timeout}
}

// Path returns the database file's path, DIR/networks.db.
func (s *NetworkStore) Path() string { return filepath.Join(s.dir, networksDBName) }

// NetworkTx is the view of the networks database inside one transaction. Its write methods fail in a
// read-only transaction (View, Locked).
type NetworkTx struct {
	nets, atts *bolt.Bucket // nil when the database is empty (read-only transactions only)
}

// Network returns the record of network name, or an error wrapping ErrNotExist.
func (tx *NetworkTx) Network(name string) ([]byte, error) {
	if tx.nets != nil {
		if v := tx.nets.Get([]byte(name)); v != nil {
			return clone(v), nil
		}
	}
	return nil, fmt.Errorf("network %q: %w", name, ErrNotExist)
}

// Networks returns every network record, sorted by name.
func (tx *NetworkTx) Networks() ([]Record, error) { return records(tx.nets) }

// PutNetwork stores (or replaces) the record of network name.
func (tx *NetworkTx) PutNetwork(name string, data []byte) error {
	if name == "" {
		return errors.New("network name must not be empty")
	}
	if tx.nets == nil || !tx.nets.Writable() {
		return fmt.Errorf("network %q: the store is open read-only", name)
	}
	return tx.nets.Put([]byte(name), data)
}

// DeleteNetwork removes network name and every attachment record it holds; it fails with ErrNotExist if
// there is no such network.
func (tx *NetworkTx) DeleteNetwork(name string) error {
	if tx.nets == nil || tx.nets.Get([]byte(name)) == nil {
		return fmt.Errorf("network %q: %w", name, ErrNotExist)
	}
	if !tx.nets.Writable() {
		return fmt.Errorf("network %q: the store is open read-only", name)
	}
	if tx.atts.Bucket([]byte(name)) != nil {
		if err := tx.atts.DeleteBucket([]byte(name)); err != nil {
			return fmt.Errorf("network %q: delete attachments: %w", name, err)
		}
	}
	return tx.nets.Delete([]byte(name))
}

// Attachments returns the attachment records of network, sorted by key; network "" means every network,
// and then each Key is "NETWORK\x00KEY".
func (tx *NetworkTx) Attachments(network string) ([]Record, error) {
	if tx.atts == nil {
		return []Record{}, nil
	}
	if network != "" {
		return records(tx.atts.Bucket([]byte(network)))
	}
	out := []Record{}
	err := tx.atts.ForEachBucket(func(k []byte) error {
		rs, err := records(tx.atts.Bucket(k))
		for _, r := range rs {
			out = append(out, Record{Key: string(k) + "\x00" + r.Key, Data: r.Data})
		}
		return err
	})
	return out, err
}

// PutAttachment stores (or replaces) an attachment record of network under key; the network must exist.
func (tx *NetworkTx) PutAttachment(network, key string, data []byte) error {
	if _, err := tx.Network(network); err != nil {
		return err
	}
	if key == "" {
		return fmt.Errorf("network %q: attachment key must not be empty", network)
	}
	if !tx.atts.Writable() {
		return fmt.Errorf("network %q: the store is open read-only", network)
	}
	b, err := tx.atts.CreateBucketIfNotExists([]byte(network))
	if err != nil {
		return fmt.Errorf("network %q: %w", network, err)
	}
	return b.Put([]byte(key), data)
}

// DeleteAttachment removes an attachment record; it fails with ErrNotExist if there is none.
func (tx *NetworkTx) DeleteAttachment(network, key string) error {
	var b *bolt.Bucket
	if tx.atts != nil {
		b = tx.atts.Bucket([]byte(network))
	}
	if b == nil || b.Get([]byte(key)) == nil {
		return fmt.Errorf("attachment %q on network %q: %w", key, network, ErrNotExist)
	}
	if !b.Writable() {
		return fmt.Errorf("network %q: the store is open read-only", network)
	}
	return b.Delete([]byte(key))
}

// View runs fn in a read-only transaction under a shared lock. A missing database holds nothing and is
// not created.
func (s *NetworkStore) View(ctx context.Context, fn func(*NetworkTx) error) error {
	if fi, err := os.Stat(s.Path()); errors.Is(err, os.ErrNotExist) || (err == nil && fi.Size() == 0) {
		return fn(&NetworkTx{})
	} else if err != nil {
		return fmt.Errorf("network store: %w", err)
	}
	return s.run(ctx, true, false, fn)
}

// Locked runs fn in a read-only transaction under the exclusive lock, creating the database when missing:
// what fn does besides (the network package rebuilds the kernel's NAT table from the records) is then
// serialised with every change, so no process can apply an older state over a newer one.
func (s *NetworkStore) Locked(ctx context.Context, fn func(*NetworkTx) error) error {
	return s.run(ctx, false, false, fn)
}

// Update runs fn in one write transaction under the exclusive lock, creating the database when missing.
// An error from fn rolls every change back.
func (s *NetworkStore) Update(ctx context.Context, fn func(*NetworkTx) error) error {
	return s.run(ctx, false, true, fn)
}

func (s *NetworkStore) run(ctx context.Context, readOnly, write bool, fn func(*NetworkTx) error) error {
	if !readOnly {
		if err := os.MkdirAll(s.dir, 0o700); err != nil {
			return fmt.Errorf("network store: create %s: %w", s.dir, err)
		}
	}
	// Synced: networks outlive reboots, and a lease must not be handed out twice after a power loss.
	db, err := openDB(ctx, "network store", s.Path(), s.timeout, readOnly, false)
	if err != nil {
		return err
	}
	body := func(tx *bolt.Tx) error {
		if err := checkSchema(tx, s.Path()); err != nil {
			return err
		}
		if write {
			if err := initNetworkSchema(tx); err != nil {
				return fmt.Errorf("network store %s: init schema: %w", s.Path(), err)
			}
		}
		return fn(&NetworkTx{nets: tx.Bucket(bucketNetworks), atts: tx.Bucket(bucketAttachments)})
	}
	if write {
		err = db.Update(body)
	} else {
		err = db.View(body)
	}
	return closeDB(db, err)
}

func initNetworkSchema(tx *bolt.Tx) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	if meta.Get(keySchema) == nil {
		if err := meta.Put(keySchema, []byte(fmt.Sprint(schemaVersion))); err != nil {
			return err
		}
	}
	if _, err := tx.CreateBucketIfNotExists(bucketNetworks); err != nil {
		return err
	}
	_, err = tx.CreateBucketIfNotExists(bucketAttachments)
	return err
}

// records lists a bucket's plain keys (not its nested buckets) in key order; bbolt's byte order is the
// sort order of the keys, but sort anyway so callers need not know.
func records(b *bolt.Bucket) ([]Record, error) {
	out := []Record{}
	if b == nil {
		return out, nil
	}
	err := b.ForEach(func(k, v []byte) error {
		if v != nil {
			out = append(out, Record{Key: string(k), Data: clone(v)})
		}
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out, err
}

// clone copies a value out of bbolt's memory map, which is only valid inside the transaction.
func clone(b []byte) []byte { return append([]byte(nil), b...) }
