package unpack

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestApplySemantics(t *testing.T) {
	cap := "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" // cap_net_bind_service, v2
	tests := []struct {
		name   string
		layers [][]ent
		opts   Options
		want   map[string]string // path -> substring of its snapshot line; "" means absent
		stats  Stats
	}{
		{
			name: "files dirs links",
			layers: [][]ent{{dir("a"), file("a/f", "hello"), symlink("a/s", "f"), hardlink("a/h", "a/f"),
				file("implicit/deep/f", "x")}},
			want: map[string]string{"a": "dir 0755 0:0", "a/f": "file 0644 0:0 size=5", "a/s": "symlink",
				"a/h": "nlink=2", "implicit/deep": "dir 0755", "implicit/deep/f": "size=1"},
		},
		{
			name:   "whiteout removes lower file and tree",
			layers: [][]ent{{file("f", "1"), dir("d"), file("d/x", "1"), file("keep", "k")}, {whiteout("f"), whiteout("d")}},
			want:   map[string]string{"f": "", "d": "", "d/x": "", "keep": "size=1"},
		},
		{
			name:   "whiteout spares the same layer",
			layers: [][]ent{{file("f", "1")}, {file("f", "22"), whiteout("f")}},
			want:   map[string]string{"f": "size=2"},
		},
		{
			name: "opaque dir",
			layers: [][]ent{{dir("d"), file("d/old", "1"), dir("d/sub"), file("d/sub/old", "1")},
				{dir("d"), file("d/new1", "1"), file("d/.wh..wh..opq", ""), dir("d/sub"), file("d/sub/new2", "2")}},
			want: map[string]string{"d/old": "", "d/sub/old": "", "d/new1": "size=1", "d/sub/new2": "size=1", "d": "dir"},
		},
		{
			name:   "type replacements",
			layers: [][]ent{{dir("a"), file("a/x", "1"), file("b", "1"), symlink("c", "/"), dir("e")}, {file("a", "22"), dir("b"), dir("c"), dir("e")}},
			want:   map[string]string{"a": "file 0644 0:0 size=2", "a/x": "", "b": "dir", "c": "dir", "e": "dir"},
		},
		{
			name: "dir over dir keeps children and takes new metadata",
			layers: [][]ent{{dir("d"), file("d/x", "1")},
				{with(dir("d"), func(h *tar.Header) { h.Mode = 0o1777; h.Uid = 7 })}},
			want: map[string]string{"d": "dir 1777 7:0", "d/x": "size=1"},
		},
		{
			name: "owners modes times",
			layers: [][]ent{{with(file("su", "x"), func(h *tar.Header) { h.Mode = 0o4755; h.Uid, h.Gid = 1000, 100 }),
				with(file("sg", "x"), func(h *tar.Header) { h.Mode = 0o2711 }),
				with(symlink("l", "su"), func(h *tar.Header) { h.Uid, h.Gid = 5, 6 })}},
			want: map[string]string{"su": "file 4755 1000:100", "sg": "file 2711", "l": "symlink 0777 5:6"},
		},
		{
			name: "xattrs",
			layers: [][]ent{{with(file("bin", "x"), func(h *tar.Header) {
				h.Format = tar.FormatPAX
				h.PAXRecords = map[string]string{"SCHILY.xattr.user.k": "v", "SCHILY.xattr.security.capability": cap,
					"SCHILY.xattr.security.selinux": "ignored"}
			})}},
			want: map[string]string{"bin": "security.capability=0100000200200000000000000000000000000000,user.k=76"},
		},
		{
			name: "devices and uid map",
			layers: [][]ent{{with(file("f", ""), func(h *tar.Header) { h.Uid, h.Gid = 0, 5 }),
				{Header: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
				{Header: tar.Header{Typeflag: tar.TypeBlock, Name: "blk", Mode: 0o600, Devmajor: 7, Devminor: 0}},
				{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o620}}}},
			opts: Options{UIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
				GIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 200000, Size: 65536}}},
			want: map[string]string{"f": "100000:200005", "null": "char 0666 100000:200000 dev=1:3",
				"blk": "block 0600", "fifo": "fifo 0620"},
		},
		{
			name: "rootless skips devices and chown",
			layers: [][]ent{{with(file("f", ""), func(h *tar.Header) { h.Uid = 9 }),
				{Header: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}},
				{Header: tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600}}}},
			opts:  Options{Rootless: true},
			want:  map[string]string{"f": "file 0644 0:0", "null": "", "fifo": "fifo"},
			stats: Stats{Entries: 3, SkippedDevices: 1},
		},
		{
			name: "dir xattrs replaced by an upper dir entry",
			layers: [][]ent{{with(dir("d"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.a": "1"} })},
				{with(dir("d"), func(h *tar.Header) { h.PAXRecords = map[string]string{"SCHILY.xattr.user.b": "2"} })}},
			want: map[string]string{"d": "xattrs=user.b=32"},
		},
		{
			name:   "root entry sets root mode, aufs metadata ignored",
			layers: [][]ent{{with(dir("./"), func(h *tar.Header) { h.Mode = 0o750 }), file(".wh..wh.plnk", ""), file("f", "")}},
			want:   map[string]string{"f": "file", ".wh..wh.plnk": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "rootfs")
			var layers [][]byte
			for _, l := range tc.layers {
				layers = append(layers, layerTar(t, l...))
			}
			st, err := Extract(context.Background(), root, readers(layers...), tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			got := snapshot(t, root, false)
			for p, w := range tc.want {
				line, ok := got[p]
				if w == "" {
					if ok {
						t.Errorf("%s: want absent, got %q", p, line)
					}
					continue
				}
				if !ok || !bytes.Contains([]byte(line), []byte(w)) {
					t.Errorf("%s: want %q in %q (present %v)", p, w, line, ok)
				}
			}
			if tc.stats != (Stats{}) {
				st.Bytes = 0
				if diff := cmp.Diff(tc.stats, st); diff != "" {
					t.Errorf("stats (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestRootEntryMode(t *testing.T) {
	root := filepath.Join(t.TempDir(), "rootfs")
	l := layerTar(t, with(dir("./"), func(h *tar.Header) { h.Mode = 0o750 }), file("f", ""))
	if err := Apply(context.Background(), root, bytes.NewReader(l), Options{}); err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Stat(root, &st); err != nil || st.Mode&0o7777 != 0o750 || int64(st.Mtim.Sec) != t0.Unix() {
		t.Errorf("root: mode %o mtime %d, want 750 and %d (err %v)", st.Mode&0o7777, st.Mtim.Sec, t0.Unix(), err)
	}
	if err := Apply(context.Background(), root, bytes.NewReader(layerTar(t, symlink(".", "/"))), Options{}); !errors.Is(err, ErrUnsafePath) {
		t.Errorf("symlink over the root: %v, want ErrUnsafePath", err)
	}
}

func TestCompression(t *testing.T) {
	plain := layerTar(t, dir("d"), file("d/f", "content"), symlink("l", "d/f"))
	want := snapshot(t, unpackTo(t, plain), true)
	for name, b := range map[string][]byte{"gzip": gzipped(t, plain), "zstd": zstded(t, plain)} {
		t.Run(name, func(t *testing.T) {
			if diff := cmp.Diff(want, snapshot(t, unpackTo(t, b), true)); diff != "" {
				t.Errorf("%s differs from plain (-plain +%s):\n%s", name, name, diff)
			}
		})
	}
	for name, b := range map[string][]byte{"xz": {0xfd, '7', 'z', 'X', 'Z', 0}, "bzip2": []byte("BZh91AY"),
		"corrupt gzip": append(gzipped(t, plain)[:40], make([]byte, 20)...)} {
		t.Run(name, func(t *testing.T) {
			if err := Apply(context.Background(), t.TempDir(), bytes.NewReader(b), Options{}); err == nil {
				t.Errorf("%s layer: no error", name)
			}
		})
	}
}

func unpackTo(t *testing.T, layer []byte) string {
	root := filepath.Join(t.TempDir(), "rootfs")
	if err := Apply(context.Background(), root, bytes.NewReader(layer), Options{}); err != nil {
		t.Fatal(err)
	}
	return root
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Apply(ctx, t.TempDir(), bytes.NewReader(layerTar(t, file("f", "x"))), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled apply: %v", err)
	}
}

func TestRootParentMode(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "a", "b", "rootfs")
	if err := Unpack(context.Background(), root, nil, Options{}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Join(base, "a"), filepath.Join(base, "a", "b")} {
		fi, err := os.Stat(p)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v (err %v), want 0700", p, fi.Mode(), err)
		}
	}
	if fi, err := os.Stat(root); err != nil || !fi.IsDir() {
		t.Errorf("root not created: %v", err)
	}
}

func TestWarningsAndMapErrors(t *testing.T) {
	var logs bytes.Buffer
	dev := ent{Header: tar.Header{Typeflag: tar.TypeChar, Name: "null", Mode: 0o666, Devmajor: 1, Devminor: 3}}
	l := layerTar(t, dev)
	o := Options{Rootless: true, Log: slog.New(slog.NewTextHandler(&logs, nil))}
	if err := Apply(context.Background(), filepath.Join(t.TempDir(), "r"), bytes.NewReader(l), o); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "devices=1") {
		t.Errorf("no warning about the skipped device: %q", logs.String())
	}
	o = Options{UIDMap: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 1000, Size: 10}}}
	l = layerTar(t, with(file("f", ""), func(h *tar.Header) { h.Uid = 10 }))
	err := Apply(context.Background(), filepath.Join(t.TempDir(), "r"), bytes.NewReader(l), o)
	if err == nil || !strings.Contains(err.Error(), "id 10 is not in the id mapping") || !strings.Contains(err.Error(), `entry "f"`) {
		t.Errorf("unmapped uid: %v", err)
	}
}

// TestDiffIDs: with Options.DiffIDs the uncompressed stream of each layer must match, whatever the
// compression; a mismatch or a miscount is an error.
func TestDiffIDs(t *testing.T) {
	raw := layerTar(t, file("a", "1"))
	sum := sha256.Sum256(raw)
	good := "sha256:" + hex.EncodeToString(sum[:])
	bad := "sha256:" + strings.Repeat("0", 64)
	tests := []struct {
		name    string
		layer   []byte
		ids     []string
		wantErr error
		wantMsg string
	}{
		{name: "plain match", layer: raw, ids: []string{good}},
		{name: "gzip match", layer: gzipped(t, raw), ids: []string{good}},
		{name: "zstd match", layer: zstded(t, raw), ids: []string{good}},
		{name: "mismatch", layer: gzipped(t, raw), ids: []string{bad}, wantErr: ErrDiffID},
		{name: "not sha256", layer: raw, ids: []string{"md5:00"}, wantMsg: "only sha256"},
		{name: "count", layer: raw, ids: []string{good, good}, wantMsg: "2 diff ids for 1 layers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := filepath.Join(t.TempDir(), "root")
			err := Unpack(context.Background(), root, readers(tt.layer), Options{DiffIDs: tt.ids})
			switch {
			case tt.wantErr != nil:
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err %v, want %v", err, tt.wantErr)
				}
			case tt.wantMsg != "":
				if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
					t.Fatalf("err %v, want %q", err, tt.wantMsg)
				}
			case err != nil:
				t.Fatal(err)
			}
		})
	}
}
