package unpack

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// benchLayer is a 100 MB synthetic layer: 100 directories of 10 files of 100 KB, half
// random (incompressible) bytes, plus a symlink and a hardlink per directory.
func benchLayer(b *testing.B) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 100<<10)
	var ents []ent
	for d := range 100 {
		dn := fmt.Sprintf("usr/lib/pkg%03d", d)
		ents = append(ents, dir(dn))
		for f := range 10 {
			for i := range len(chunk) / 2 {
				chunk[i] = byte(rng.Uint32())
			}
			ents = append(ents, file(fmt.Sprintf("%s/f%02d", dn, f), string(chunk)))
		}
		ents = append(ents, symlink(dn+"/link", "f00"), hardlink(dn+"/hard", dn+"/f01"))
	}
	return layerTar(b, ents...)
}

func BenchmarkApply(b *testing.B) {
	plain := benchLayer(b)
	for _, tc := range []struct {
		name  string
		layer []byte
	}{{"plain", plain}, {"gzip", gzipped(b, plain)}, {"zstd", zstded(b, plain)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(plain))) // MB/s of uncompressed layer
			dir := b.TempDir()
			if d := os.Getenv("KNAST_BENCH_DIR"); d != "" { // e.g. a tmpfs, to measure without the disk
				dir = d
			}
			for i := 0; b.Loop(); i++ {
				root := filepath.Join(dir, fmt.Sprint(i), "rootfs")
				if err := Apply(context.Background(), root, bytes.NewReader(tc.layer), Options{}); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				os.RemoveAll(filepath.Dir(root))
				b.StartTimer()
			}
		})
	}
}
