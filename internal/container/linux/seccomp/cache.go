package seccomp

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// PrepareCached is Prepare with an on-disk cache of compiled programs in dir (created 0700). Compiling a
// full profile with libseccomp costs ~15 ms, more than the rest of a container's creation; the program
// only depends on the profile, the libseccomp version and the kernel (for flag support), which form the
// key. A missing, unreadable or corrupt entry is recompiled and rewritten; cache errors never fail a create.
func PrepareCached(s *specs.LinuxSeccomp, dir, kernel string) (*Filter, error) {
	key, err := cacheKey(s, kernel)
	if err != nil {
		return Prepare(s)
	}
	path := filepath.Join(dir, key+".json")
	if b, err := os.ReadFile(path); err == nil {
		var f Filter
		if json.Unmarshal(b, &f) == nil {
			return &f, nil
		}
	}
	f, err := Prepare(s)
	if err != nil {
		return nil, err
	}
	if b, err := json.Marshal(f); err == nil && os.MkdirAll(dir, 0o700) == nil {
		// Written whole then renamed: concurrent creates see the old entry or the new one, never half.
		tmp, err := os.CreateTemp(dir, ".tmp-*")
		if err == nil {
			_, werr := tmp.Write(b)
			cerr := tmp.Close()
			if werr != nil || cerr != nil || os.Rename(tmp.Name(), path) != nil {
				os.Remove(tmp.Name())
			}
		}
	}
	return f, nil
}

func cacheKey(s *specs.LinuxSeccomp, kernel string) (string, error) {
	b, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	fmt.Fprintf(h, "knast-seccomp-v1\x00%s\x00%s\x00", Version(), kernel)
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil)), nil
}
