package testkit

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"fmt"
	"math/rand/v2"
	"os"
)

// BigBundle writes a ~200 MB (unpacked) bundle shaped like a real app, for
// unpack benchmarks: one 80 MiB binary and 3000 assets of 40 KiB. Contents
// are random letters from a 16-letter alphabet, so gzip only halves them;
// the seed is fixed, so every run unpacks the same bytes. It returns the
// unpacked size.
func BigBundle(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("creating %s: %w", path, err)
	}
	defer f.Close()
	bw := bufio.NewWriterSize(f, 1<<20)
	zw, _ := gzip.NewWriterLevel(bw, gzip.BestSpeed)
	tw := tar.NewWriter(zw)
	rng := rand.New(rand.NewPCG(1, 2))
	chunk := make([]byte, 1<<20)
	var total int64
	add := func(name string, size int, mode int64) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: mode, Size: int64(size), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		for size > 0 {
			n := min(size, len(chunk))
			for i := range chunk[:n] {
				chunk[i] = 'a' + byte(rng.IntN(16))
			}
			if _, err := tw.Write(chunk[:n]); err != nil {
				return err
			}
			size -= n
			total += int64(n)
		}
		return nil
	}
	if err := add("config/keter.yaml", 40, 0o644); err != nil {
		return 0, err
	}
	if err := add("bin/app", 80<<20, 0o755); err != nil {
		return 0, err
	}
	for i := range 3000 {
		if err := add(fmt.Sprintf("static/d%02d/asset-%04d.js", i%50, i), 40<<10, 0o644); err != nil {
			return 0, err
		}
	}
	for _, c := range []func() error{tw.Close, zw.Close, bw.Flush} {
		if err := c(); err != nil {
			return 0, fmt.Errorf("writing %s: %w", path, err)
		}
	}
	return total, nil
}
