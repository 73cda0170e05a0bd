package build

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
)

// srcTree is a tree COPY and ADD read from: the build context (with .dockerignore) or another stage's
// or image's root filesystem. Paths resolve inside root (symlinks as if root were "/").
type srcTree struct {
	root string
	// what names the tree in messages ("the build context", "stage builder").
	what string
	// ignore is the context's .dockerignore; nil for root filesystems.
	ignore *patternmatcher.PatternMatcher
	// keepOwners: files from a root filesystem keep their owners, context files become 0:0.
	keepOwners bool
}

// source is one matched source: rel is its cleaned path in the tree, host the file on the host.
type source struct {
	rel  string
	host string
	fi   os.FileInfo
}

// openContext opens a build context directory and reads its .dockerignore.
func openContext(dir string) (*srcTree, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory", dir)
	}
	t := &srcTree{root: abs, what: "the build context"}
	f, err := os.Open(filepath.Join(abs, ".dockerignore"))
	if errors.Is(err, fs.ErrNotExist) {
		return t, nil
	}
	if err != nil {
		return nil, fmt.Errorf("build context: %w", err)
	}
	defer f.Close()
	patterns, err := ignorefile.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	if len(patterns) > 0 {
		if t.ignore, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	return t, nil
}

// excluded reports whether .dockerignore leaves rel (a cleaned relative path) out.
func (t *srcTree) excluded(rel string) bool {
	if t.ignore == nil || rel == "" {
		return false
	}
	ok, err := t.ignore.MatchesOrParentMatches(rel)
	return err == nil && ok
}

// resolve maps a path of the tree to the host, symlinks resolved inside root.
func (t *srcTree) resolve(rel string) (string, string, error) {
	host, err := securejoin.SecureJoin(t.root, rel)
	if err != nil {
		return "", "", fmt.Errorf("%s: %s: %w", t.what, rel, err)
	}
	r, err := filepath.Rel(t.root, host)
	if err != nil || strings.HasPrefix(r, "..") {
		return "", "", fmt.Errorf("%s: %s resolves outside it", t.what, rel)
	}
	if r == "." {
		r = ""
	}
	return host, filepath.ToSlash(r), nil
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

// match expands one COPY/ADD source (wildcards allowed in any component) to the sources it names,
// sorted. A source that matches nothing is an error naming it.
func (t *srcTree) match(src string) ([]source, error) {
	clean := strings.TrimPrefix(path.Clean("/"+filepath.ToSlash(src)), "/")
	if !hasMeta(clean) {
		host, rel, err := t.resolve(clean)
		if err != nil {
			return nil, err
		}
		fi, err := os.Lstat(host)
		if err != nil || t.excluded(rel) {
			why := "no such file or directory"
			if err == nil {
				why = "excluded by .dockerignore"
			}
			return nil, fmt.Errorf("%s: %s in %s", src, why, t.what)
		}
		return []source{{rel: rel, host: host, fi: fi}}, nil
	}
	cands := []string{""}
	for _, comp := range strings.Split(clean, "/") {
		var next []string
		for _, c := range cands {
			p := path.Join(c, comp)
			if !hasMeta(comp) {
				next = append(next, p)
				continue
			}
			host, _, err := t.resolve(c)
			if err != nil {
				return nil, err
			}
			ents, err := os.ReadDir(host)
			if err != nil {
				continue
			}
			for _, e := range ents {
				if ok, _ := path.Match(comp, e.Name()); ok {
					next = append(next, path.Join(c, e.Name()))
				}
			}
		}
		cands = next
	}
	var out []source
	seen := map[string]bool{}
	for _, c := range cands {
		host, rel, err := t.resolve(c)
		if err != nil {
			return nil, err
		}
		fi, err := os.Lstat(host)
		if err != nil || t.excluded(rel) || seen[rel] {
			continue
		}
		seen[rel] = true
		out = append(out, source{rel: rel, host: host, fi: fi})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no files match in %s", src, t.what)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rel < out[j].rel })
	return out, nil
}

// walk calls fn for s and, for a directory, everything below it (parents first, names sorted),
// skipping what .dockerignore excludes and never following symlinks. rel is relative to s.
func (t *srcTree) walk(s source, fn func(rel, host string, fi os.FileInfo) error) error {
	if err := fn("", s.host, s.fi); err != nil {
		return err
	}
	if !s.fi.IsDir() {
		return nil
	}
	var rec func(rel, host string) error
	rec = func(rel, host string) error {
		ents, err := os.ReadDir(host)
		if err != nil {
			return fmt.Errorf("%s: read %s: %w", t.what, path.Join(s.rel, rel), err)
		}
		for _, e := range ents {
			r := path.Join(rel, e.Name())
			h := filepath.Join(host, e.Name())
			full := path.Join(s.rel, r)
			fi, err := os.Lstat(h)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", t.what, full, err)
			}
			if t.excluded(full) {
				// An exception (!pattern) may re-include something below an excluded directory.
				if !fi.IsDir() || !t.ignore.Exclusions() {
					continue
				}
			} else if err := fn(r, h, fi); err != nil {
				return err
			}
			if fi.IsDir() {
				if err := rec(r, h); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return rec("", s.host)
}

// digest hashes what a COPY of these sources reads: names, types, modes, owners (for root
// filesystems), link targets and contents. Times are left out, as Docker's cache does.
func (t *srcTree) digest(srcs []source) (string, error) {
	h := sha256.New()
	for _, s := range srcs {
		fmt.Fprintf(h, "src %s\n", s.rel)
		err := t.walk(s, func(rel, host string, fi os.FileInfo) error {
			return hashEntry(h, rel, host, fi, t.keepOwners)
		})
		if err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashEntry(h hash.Hash, rel, host string, fi os.FileInfo, owners bool) error {
	fmt.Fprintf(h, "%q %o %d", rel, uint32(fi.Mode()), fi.Size())
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && owners {
		fmt.Fprintf(h, " %d:%d", st.Uid, st.Gid)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(host)
		if err != nil {
			return fmt.Errorf("read link %s: %w", rel, err)
		}
		fmt.Fprintf(h, " -> %q", target)
	case fi.Mode().IsRegular():
		f, err := os.Open(host)
		if err != nil {
			return fmt.Errorf("hash %s: %w", rel, err)
		}
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("hash %s: %w", rel, err)
		}
	}
	h.Write([]byte{'\n'})
	return nil
}
