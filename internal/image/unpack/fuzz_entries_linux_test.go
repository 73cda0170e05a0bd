package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// entryNames and linkTargets are the path pieces the structured fuzzer combines: climbing, absolute,
// whiteout and self-referencing names, so that it reaches the interesting headers at once instead
// of first having to discover tar checksums. "OUT" becomes the sentinel directory's absolute path.
var (
	entryNames  = []string{"a", "b", "d", "..", ".", "", "sub", ".wh.a", ".wh..wh..opq", "outside", "OUT", "/", "keep", "passwd", ".wh.", "..."}
	linkTargets = []string{"a", "b", "..", "../outside", "../../../../outside", "/", "OUT", "OUT/passwd", "d/../..", "a/b", ".", "/outside", "sub/../../outside", "", "b/../../../outside/keep", "a/passwd"}
	entryTypes  = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeFifo, tar.TypeChar, tar.TypeBlock, tar.TypeReg /* whiteout */, tar.TypeReg /* opaque */, tar.TypeXGlobalHeader}
)

// fuzzReader hands out the fuzzer's bytes; past the end it returns zeros.
type fuzzReader struct {
	b []byte
	i int
}

func (r *fuzzReader) byte() byte {
	if r.i >= len(r.b) {
		r.i++
		return 0
	}
	c := r.b[r.i]
	r.i++
	return c
}

func (r *fuzzReader) done() bool { return r.i >= len(r.b) }

func (r *fuzzReader) pick(list []string) string { return list[int(r.byte())%len(list)] }

// name joins 1-3 pieces; pieces of OUT expand to out.
func (r *fuzzReader) path(list []string, out string) string {
	n := 1 + int(r.byte())%3
	parts := make([]string, 0, n)
	for range n {
		parts = append(parts, r.pick(list))
	}
	p := strings.Join(parts, "/")
	return strings.ReplaceAll(p, "OUT", out)
}

// fuzzLayers decodes data into layers of tar entries: each entry is a type, a name, a link target,
// mode/owner bytes and a body length; a zero control byte starts a new layer. Entries the tar
// writer refuses are dropped, so every input is a well-formed stream of hostile headers.
func fuzzLayers(data []byte, out string) [][]byte {
	r := &fuzzReader{b: data}
	var layers [][]byte
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	flush := func() {
		tw.Close()
		layers = append(layers, bytes.Clone(buf.Bytes()))
		buf.Reset()
		tw = tar.NewWriter(&buf)
	}
	for entries := 0; !r.done() && entries < 64; entries++ {
		ctl := r.byte()
		if ctl == 0 && buf.Len() > 0 && len(layers) < 4 {
			flush()
			continue
		}
		kind := int(ctl) % len(entryTypes)
		name := r.path(entryNames, out)
		hdr := &tar.Header{Typeflag: entryTypes[kind], Name: name, Format: tar.FormatPAX}
		switch kind {
		case 7:
			hdr.Name = filepath.Join(filepath.Dir(name), whPrefix+filepath.Base(name))
		case 8:
			hdr.Name = filepath.Join(name, whPrefix+whPrefix+".opq")
		case 9:
			hdr.PAXRecords = map[string]string{"path": r.path(entryNames, out)}
		}
		if hdr.Typeflag == tar.TypeSymlink || hdr.Typeflag == tar.TypeLink {
			hdr.Linkname = r.path(linkTargets, out)
		}
		m := r.byte()
		hdr.Mode = int64(m)<<4 | int64(m&0o17)
		if m&0x80 != 0 {
			hdr.Mode |= 0o7000
		}
		hdr.Uid, hdr.Gid = int(r.byte()), int(r.byte())
		if hdr.Typeflag == tar.TypeChar || hdr.Typeflag == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = int64(r.byte()%4), int64(r.byte()%8)
		}
		if x := r.byte(); x&1 != 0 {
			hdr.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v", "SCHILY.xattr.trusted.t": string(rune('a' + x%26))}
		}
		var body []byte
		if hdr.Typeflag == tar.TypeReg {
			body = bytes.Repeat([]byte{'x'}, int(r.byte())%16)
			hdr.Size = int64(len(body))
		}
		if tw.WriteHeader(hdr) != nil {
			continue
		}
		tw.Write(body)
	}
	flush()
	return layers
}

// FuzzApplyEntries builds layers of hostile but well-formed tar entries from the fuzzer's bytes
// (types, names with .., absolute and whiteout names, symlinks and hardlinks pointing out, device
// nodes, xattrs, several layers) and unpacks them into base/rootfs: nothing outside the root may
// change, nothing but the root may appear in base, and no input may panic.
func FuzzApplyEntries(f *testing.F) {
	for _, seed := range fuzzEntrySeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base := t.TempDir()
		out, check := sentinel(t, base)
		root := filepath.Join(base, "rootfs")
		// Errors are expected; escapes and panics are the failures.
		_ = Unpack(context.Background(), root, readers(fuzzLayers(data, out)...), Options{MaxBytes: 1 << 20, MaxEntries: 256})
		check()
		ents, err := os.ReadDir(base)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if got := fmt.Sprint(names); got != "[outside rootfs]" && got != "[outside]" {
			t.Errorf("base holds %v, want only outside and (unless a layer failed) rootfs", names)
		}
	})
}

// fuzzEntrySeeds are inputs for the decoder above: each byte run encodes one attack the unit
// tests name (see TestHostileLayers), so the fuzzer starts from them.
func fuzzEntrySeeds() [][]byte {
	// ctl (type index), name count, name pieces..., [link count, link pieces...], mode, uid, gid, [dev], xattr, [len]
	const (
		reg, dir, sym, lnk, fifo, chr = 10, 1, 2, 3, 4, 5
		wh, opq, pax                  = 7, 8, 9
		nA, nB, nD, nDotDot, nOut     = 0, 1, 2, 3, 10
		tUp, tOut, tOutPasswd         = 3, 6, 7
		tDeep                         = 4
	)
	return [][]byte{
		{sym, 0, nA, 0, tOut, 0o77, 0, 0, 0, reg, 1, nA, nB, 0o64, 0, 0, 0, 5},          // a -> OUT; a/b
		{sym, 0, nA, 0, tUp, 0o77, 0, 0, 0, 0, reg, 1, nA, 9, 0o64, 0, 0, 0, 5},         // a -> ../outside; next layer a/outside
		{reg, 1, nDotDot, nOut, 0o64, 0, 0, 0, 3},                                       // ../OUT (absolute)
		{sym, 0, nB, 0, tOut, 0o77, 0, 0, 0, lnk, 0, nA, 1, 1, 7, 0o64, 0, 0, 0},        // b -> OUT; a hardlinks b/passwd
		{lnk, 0, nA, 0, tOutPasswd, 0o64, 0, 0, 0},                                      // hardlink to OUT/passwd
		{sym, 0, nA, 0, tDeep, 0o77, 0, 0, 0, 0, wh, 1, nA, 9, 0, 0, 0, 0, 0},           // whiteout under a symlink out
		{sym, 0, nD, 0, tOut, 0o77, 0, 0, 0, 0, opq, 0, nD, 0, 0, 0, 0},                 // opaque dir through a symlink
		{sym, 0, nD, 0, tOut, 0o77, 0, 0, 0, 0, dir, 0, nD, 0xff, 9, 9, 1},              // dir entry (chmod/chown/xattr) over a symlink
		{sym, 0, nD, 0, tOut, 0o77, 0, 0, 0, fifo, 1, nD, 9, 0o64, 0, 0, 0},             // fifo through a symlink
		{sym, 0, nD, 0, tOut, 0o77, 0, 0, 0, chr, 1, nD, 9, 0o64, 0, 0, 1, 3, 0},        // char device through a symlink
		{pax, 0, nA, 0, nDotDot, 0o64, 0, 0, 0, reg, 0, nA, 0o64, 0, 0, 0, 1},           // global PAX header naming ..
		{reg, 0, nA, 0x80, 0, 0, 1, 15, sym, 0, nA, 0, tOut, 0o77, 0, 0, 0, reg, 0, nA}, // file, replaced by a symlink out, rewritten
	}
}

// TestFuzzEntrySeeds checks the decoder turns the first seeds into the attacks they are meant to be.
func TestFuzzEntrySeeds(t *testing.T) {
	want := []string{
		"layer 0: 2 a->/O|0 a/b",
		"layer 0: 2 a->../outside|layer 1: 0 a/outside",
		"layer 0: 0 ..//O",
	}
	for i, w := range want {
		var got []string
		for n, l := range fuzzLayers(fuzzEntrySeeds()[i], "/O") {
			tr := tar.NewReader(bytes.NewReader(l))
			for first := true; ; first = false {
				h, err := tr.Next()
				if err != nil {
					break
				}
				e := fmt.Sprintf("%c %s", h.Typeflag, h.Name)
				if h.Linkname != "" {
					e += "->" + h.Linkname
				}
				if first {
					e = fmt.Sprintf("layer %d: %s", n, e)
				}
				got = append(got, e)
			}
		}
		if g := strings.Join(got, "|"); g != w {
			t.Errorf("seed %d decodes to %q, want %q", i, g, w)
		}
	}
}
