package bundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"time"
)

// ErrVanished means the bundle file disappeared while keter waited for it.
var ErrVanished = errors.New("bundle file vanished")

// WaitComplete waits until the file at path keeps the same size and
// modification time for stable, then checks that its gzip or zstd
// stream reads to a clean end (Keter #318: a half-copied bundle gave
// "premature end of compressed data stream"). It returns ErrVanished if
// the file is removed, an ErrCorrupt error if the stable file is not a
// complete stream (the caller tries again on the file's next change), or
// ctx's error.
func WaitComplete(ctx context.Context, path string, stable time.Duration) error {
	poll := min(max(stable/5, 10*time.Millisecond), 500*time.Millisecond)
	var last fs.FileInfo
	since := time.Now()
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		fi, err := os.Stat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("waiting for %s: %w", path, ErrVanished)
		}
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", path, err)
		}
		if last == nil || fi.Size() != last.Size() || !fi.ModTime().Equal(last.ModTime()) {
			last, since = fi, time.Now()
		} else if time.Since(since) >= stable {
			err := checkStream(ctx, path)
			if errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("waiting for %s: %w", path, ErrVanished)
			}
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", path, err)
			}
			// A writer may have appended while we read: only a file that
			// did not change during the check is complete.
			now, err := os.Stat(path)
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", path, ErrVanished)
			}
			if now.Size() == fi.Size() && now.ModTime().Equal(fi.ModTime()) {
				return nil
			}
			last, since = now, time.Now()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// checkStream reads the whole gzip or zstd stream, which verifies every
// gzip member's CRC and length trailer (and zstd's checksums, if any).
func checkStream(ctx context.Context, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	bufs := bufPool.Get().(*ioBufs)
	defer bufPool.Put(bufs)
	bufs.br.Reset(f)
	defer bufs.br.Reset(nil)
	zr, err := bufs.decompressor()
	if err != nil {
		return err
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := fill(zr, bufs.buf)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
	}
}

// Digest returns the sha256 of the file at path in hex, to tell bundle
// versions apart and to ignore a second event for unchanged content.
func Digest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing bundle: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, ioBuf)); err != nil {
		return "", fmt.Errorf("hashing bundle %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
