package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

// unpackResult: keter's bundle.Unpack against `tar xzf` on one bundle.
type unpackResult struct {
	Unpacked, Gzipped int64
	Keter, Tar        []time.Duration
}

func (r unpackResult) mbps(ds []time.Duration) float64 {
	return float64(r.Unpacked) / 1e6 / median(ds).Seconds()
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
	if res.Unpacked, err = testkit.BigBundle(archive); err != nil {
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
