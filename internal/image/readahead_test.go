package image

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// TestReadAhead: the stream read ahead is the decompressed blob, whatever its size against the
// chunk size; a failing blob fails the stream after its data; Close mid-stream returns.
func TestReadAhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.IntN(16)) // compressible, but not trivially
		}
		return b
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write(b)
		zw.Close()
		return buf.Bytes()
	}
	errBlob := errors.New("blob went bad")
	tests := []struct {
		name    string
		data    []byte // what the stream must yield
		blob    []byte
		fail    bool // the blob's reader fails at its end
		wantErr error
	}{
		{name: "empty plain", data: []byte{}, blob: []byte{}},
		{name: "small gzip", data: []byte("hello"), blob: gz([]byte("hello"))},
		{name: "gzip of several chunks", data: payload(3*readAheadChunk + 17), blob: nil},
		{name: "plain exactly one chunk", data: payload(readAheadChunk), blob: nil},
		{name: "gzip, blob fails at its end", data: payload(readAheadChunk + 5), fail: true, wantErr: errBlob},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			blob := tt.blob
			if blob == nil {
				blob = gz(tt.data)
				if tt.name == "plain exactly one chunk" {
					blob = tt.data
				}
			}
			var r io.Reader = bytes.NewReader(blob)
			if tt.fail {
				r = io.MultiReader(r, errReader{errBlob})
			}
			ra := startReadAhead(func() (io.ReadCloser, error) { return io.NopCloser(r), nil })
			defer ra.Close()
			got, err := io.ReadAll(ra)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("read: %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == nil && !bytes.Equal(got, tt.data) {
				t.Fatalf("got %d bytes, want %d (equal: false)", len(got), len(tt.data))
			}
		})
	}

	t.Run("close mid-stream", func(t *testing.T) {
		big := gz(payload((readAheadChunks + 8) * readAheadChunk))
		ra := startReadAhead(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(big)), nil })
		if _, err := io.ReadFull(ra, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
		ra.Close() // must not hang on the full channel
		ra.Close()
	})
	t.Run("open fails", func(t *testing.T) {
		ra := startReadAhead(func() (io.ReadCloser, error) { return nil, errBlob })
		defer ra.Close()
		if _, err := io.ReadAll(ra); !errors.Is(err, errBlob) {
			t.Fatalf("read: %v, want %v", err, errBlob)
		}
	})
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
