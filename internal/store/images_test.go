package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestImageStore(t *testing.T) {
	ctx := context.Background()
	s := OpenImages(t.TempDir(), time.Second)
	// A store that was never written holds nothing and is not created by reads.
	if all, err := s.Images(ctx); err != nil || len(all) != 0 {
		t.Fatalf("Images on empty store = %v, %v", all, err)
	}
	if _, err := s.Image(ctx, "x"); !errors.Is(err, ErrNotExist) {
		t.Fatalf("Image on empty store: %v", err)
	}
	a := Image{Name: "docker.io/library/b:1", Digest: "sha256:aa", ManifestDigest: "sha256:aa", Platform: "linux/amd64", Size: 3}
	b := Image{Name: "docker.io/library/a:1", Digest: "sha256:bb", ManifestDigest: "sha256:cc", Created: time.Unix(5, 0).UTC()}
	if err := s.Update(ctx, func(tx *ImageTx) error {
		if err := tx.Put(a); err != nil {
			return err
		}
		return tx.Put(b)
	}); err != nil {
		t.Fatal(err)
	}
	all, err := s.Images(ctx)
	if err != nil || len(all) != 2 || all[0] != b || all[1] != a {
		t.Fatalf("Images = %+v, %v", all, err)
	}
	if got, err := s.Image(ctx, a.Name); err != nil || got != a {
		t.Errorf("Image = %+v, %v", got, err)
	}
	// An error from fn rolls the transaction back.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx *ImageTx) error {
		if err := tx.Delete(a.Name); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if _, err := s.Image(ctx, a.Name); err != nil {
		t.Errorf("rolled-back delete took effect: %v", err)
	}
	for _, tc := range []struct {
		name string
		fn   func(tx *ImageTx) error
	}{
		{"empty name", func(tx *ImageTx) error { return tx.Put(Image{Digest: "sha256:a", ManifestDigest: "sha256:a"}) }},
		{"no digest", func(tx *ImageTx) error { return tx.Put(Image{Name: "n"}) }},
		{"delete missing", func(tx *ImageTx) error { return tx.Delete("nothere") }},
	} {
		if err := s.Update(ctx, tc.fn); err == nil {
			t.Errorf("%s: no error", tc.name)
		}
	}
	if err := s.Update(ctx, func(tx *ImageTx) error { return tx.Delete(a.Name) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Image(ctx, a.Name); !errors.Is(err, ErrNotExist) {
		t.Errorf("deleted image: %v", err)
	}
}
