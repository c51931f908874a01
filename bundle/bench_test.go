package bundle

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// benchBundle writes a ~200 MB (unpacked) bundle shaped like a real app:
// one large binary, a few thousand assets. Contents are random letters
// from a 16-letter alphabet, so gzip only halves them.
func benchBundle(b *testing.B, path string) int64 {
	b.Helper()
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	var total int64
	add := func(name string, size int, mode int64) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
			b.Fatal(err)
		}
		for size > 0 {
			n := min(size, len(chunk))
			for i := range chunk[:n] {
				chunk[i] = 'a' + byte(rng.IntN(16))
			}
			tw.Write(chunk[:n])
			size -= n
			total += int64(n)
		}
	}
	add("config/keter.yaml", 40, 0o644)
	add("bin/app", 80<<20, 0o755)
	for i := range 3000 {
		add(fmt.Sprintf("static/d%02d/asset-%04d.js", i%50, i), 40<<10, 0o644)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		b.Fatal(err)
	}
	return total
}

// BenchmarkUnpack compares Unpack with `tar xzf` on the same bundle.
// Run: go test -run '^$' -bench BenchmarkUnpack -benchtime 5x ./bundle
func BenchmarkUnpack(b *testing.B) {
	dir := b.TempDir()
	archive := filepath.Join(dir, "bench.keter")
	size := benchBundle(b, archive)
	if fi, err := os.Stat(archive); err == nil {
		b.Logf("bundle: %d MB unpacked, %d MB gzipped", size>>20, fi.Size()>>20)
	}
	run := func(b *testing.B, unpack func(dest string) error) {
		b.SetBytes(size)
		for i := 0; b.Loop(); i++ {
			dest := filepath.Join(dir, fmt.Sprintf("out-%d", i))
			if err := unpack(dest); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			os.RemoveAll(dest)
			b.StartTimer()
		}
	}
	b.Run("keter", func(b *testing.B) {
		run(b, func(dest string) error { return Unpack(b.Context(), archive, dest, DefaultLimits()) })
	})
	b.Run("tar-xzf", func(b *testing.B) {
		tarBin, err := exec.LookPath("tar")
		if err != nil {
			b.Skip("no tar")
		}
		run(b, func(dest string) error {
			if err := os.Mkdir(dest, 0o755); err != nil {
				return err
			}
			out, err := exec.Command(tarBin, "xzf", archive, "-C", dest).CombinedOutput()
			if err != nil {
				return fmt.Errorf("%v: %s", err, out)
			}
			return nil
		})
	})
}
