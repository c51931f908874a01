package main

import (
	"archive/tar"
	"bufio"
	"compress/gzip"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

// unpackResult: keter's bundle.Unpack against `tar xzf` on one bundle.
type unpackResult struct {
	Unpacked, Gzipped int64
	Keter, Tar        []time.Duration
}

func (r unpackResult) mbps(ds []time.Duration) float64 {
	return float64(r.Unpacked) / 1e6 / median(ds).Seconds()
}

// writeBigBundle writes a bundle shaped like bundle/bench_test.go's: one
// 80 MiB binary and 3000 assets of 40 KiB, random letters from a
// 16-letter alphabet so gzip only halves them.
func writeBigBundle(path string) (int64, error) {
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

// benchUnpack alternates the two unpackers, runs times each, into fresh
// folders on the same disk as keter's roots; deleting is not timed.
func benchUnpack(ctx context.Context, e env, runs int) (res unpackResult, err error) {
	dir := filepath.Join(e.base, "unpack")
	if err := os.RemoveAll(dir); err != nil {
		return res, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return res, err
	}
	defer os.RemoveAll(dir)
	archive := filepath.Join(dir, "big.keter")
	if res.Unpacked, err = writeBigBundle(archive); err != nil {
		return res, err
	}
	fi, err := os.Stat(archive)
	if err != nil {
		return res, err
	}
	res.Gzipped = fi.Size()
	e.logf("  bundle: %d MB unpacked, %d MB gzipped", res.Unpacked/1e6, res.Gzipped/1e6)
	for i := range runs {
		dest := filepath.Join(dir, fmt.Sprintf("keter-%d", i))
		start := time.Now()
		if err := bundle.Unpack(ctx, archive, dest, bundle.DefaultLimits()); err != nil {
			return res, fmt.Errorf("unpacking with bundle.Unpack: %w", err)
		}
		res.Keter = append(res.Keter, time.Since(start))
		os.RemoveAll(dest)

		dest = filepath.Join(dir, fmt.Sprintf("tar-%d", i))
		if err := os.Mkdir(dest, 0o755); err != nil {
			return res, err
		}
		start = time.Now()
		if out, err := exec.CommandContext(ctx, "tar", "xzf", archive, "-C", dest).CombinedOutput(); err != nil {
			return res, fmt.Errorf("unpacking with tar xzf: %w: %s", err, out)
		}
		res.Tar = append(res.Tar, time.Since(start))
		os.RemoveAll(dest)
		e.logf("  run %d: bundle.Unpack %s, tar xzf %s", i+1, res.Keter[i].Round(time.Millisecond), res.Tar[i].Round(time.Millisecond))
	}
	return res, nil
}
