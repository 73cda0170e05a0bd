package build

import (
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"strings"
	"sync"
)

// digester hashes what is written to it into an OCI sha256 digest.
type digester struct{ h hash.Hash }

func newDigester() *digester                    { return &digester{h: sha256.New()} }
func (d *digester) Write(p []byte) (int, error) { return d.h.Write(p) }
func (d *digester) digest() string              { return "sha256:" + hex.EncodeToString(d.h.Sum(nil)) }

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append([]byte(nil), t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := string(t.b)
	if len(t.b) == t.max {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = "...\n" + s[i+1:]
		}
	}
	return s
}
