package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestNetworkStore(t *testing.T) {
	ctx := context.Background()
	s := OpenNetworks(t.TempDir(), time.Second)
	// Reads of a store never written see nothing and do not create the file.
	if err := s.View(ctx, func(tx *NetworkTx) error {
		nets, err := tx.Networks()
		if err != nil || len(nets) != 0 {
			return fmt.Errorf("Networks = %v, %v", nets, err)
		}
		if _, err := tx.Network("x"); !errors.Is(err, ErrNotExist) {
			return fmt.Errorf("Network(x) = %v", err)
		}
		atts, err := tx.Attachments("")
		if err != nil || len(atts) != 0 {
			return fmt.Errorf("Attachments = %v, %v", atts, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.Path()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("View created %s: %v", s.Path(), err)
	}
	if err := s.Update(ctx, func(tx *NetworkTx) error {
		for _, n := range []string{"b", "a"} {
			if err := tx.PutNetwork(n, []byte(`{"name":"`+n+`"}`)); err != nil {
				return err
			}
		}
		if err := tx.PutAttachment("a", "c1\x00eth0", []byte("1")); err != nil {
			return err
		}
		if err := tx.PutAttachment("b", "c1\x00eth0", []byte("2")); err != nil {
			return err
		}
		return tx.PutAttachment("a", "c0\x00eth0", []byte("0"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.View(ctx, func(tx *NetworkTx) error {
		nets, err := tx.Networks()
		if err != nil || len(nets) != 2 || nets[0].Key != "a" || nets[1].Key != "b" {
			return fmt.Errorf("Networks = %v, %v", nets, err)
		}
		atts, err := tx.Attachments("a")
		if err != nil || len(atts) != 2 || atts[0].Key != "c0\x00eth0" || string(atts[1].Data) != "1" {
			return fmt.Errorf("Attachments(a) = %q, %v", atts, err)
		}
		all, err := tx.Attachments("")
		if err != nil || len(all) != 3 || all[2].Key != "b\x00c1\x00eth0" {
			return fmt.Errorf("Attachments() = %q, %v", all, err)
		}
		// Writes are refused in a read-only transaction.
		if err := tx.PutNetwork("c", nil); err == nil {
			return errors.New("PutNetwork in View succeeded")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Errors roll back; bad calls fail.
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		fn   func(tx *NetworkTx) error
		want error
	}{
		{"rollback", func(tx *NetworkTx) error {
			if err := tx.DeleteNetwork("a"); err != nil {
				return err
			}
			return boom
		}, boom},
		{"attachment on missing network", func(tx *NetworkTx) error { return tx.PutAttachment("zz", "k", nil) }, ErrNotExist},
		{"delete missing attachment", func(tx *NetworkTx) error { return tx.DeleteAttachment("a", "nope") }, ErrNotExist},
		{"delete missing network", func(tx *NetworkTx) error { return tx.DeleteNetwork("zz") }, ErrNotExist},
	} {
		if err := s.Update(ctx, tc.fn); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	// Deleting a network deletes its attachments.
	if err := s.Update(ctx, func(tx *NetworkTx) error { return tx.DeleteNetwork("a") }); err != nil {
		t.Fatal(err)
	}
	if err := s.Locked(ctx, func(tx *NetworkTx) error {
		all, err := tx.Attachments("")
		if err != nil || len(all) != 1 || all[0].Key != "b\x00c1\x00eth0" {
			return fmt.Errorf("after delete: %q, %v", all, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// TestNetworkStoreSerialises checks that read-modify-write transactions from many openers (each its own
// file descriptor and flock, like separate processes) never lose an update: the IPAM guarantee.
func TestNetworkStoreSerialises(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s := OpenNetworks(dir, 30*time.Second)
			errs <- s.Update(ctx, func(tx *NetworkTx) error {
				if _, err := tx.Network("net"); errors.Is(err, ErrNotExist) {
					if err := tx.PutNetwork("net", []byte("{}")); err != nil {
						return err
					}
				}
				atts, err := tx.Attachments("net")
				if err != nil {
					return err
				}
				// The next free number, as an allocator would pick it.
				return tx.PutAttachment("net", fmt.Sprintf("c%02d", i), []byte(strconv.Itoa(len(atts))))
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	seen := map[string]bool{}
	if err := OpenNetworks(dir, time.Second).View(ctx, func(tx *NetworkTx) error {
		atts, err := tx.Attachments("net")
		for _, a := range atts {
			seen[string(a.Data)] = true
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d distinct values from %d writers: %v", len(seen), n, seen)
	}
}
