package app

import (
	"context"
	"errors"
	"os"

	"github.com/keter-systemd/keter/bundle"
)

// unpack reads the bundle once, hashing as it goes. A bundle renamed into
// incoming is complete at once; one still being copied reads as cut short
// or changes under us, and is then waited for and read again.
func (m *Manager) unpack(ctx context.Context, path, dir string, lim bundle.Limits) (string, bundle.Sums, fileID, error) {
	for attempt := 0; ; attempt++ {
		before, err := os.Stat(path)
		if err != nil {
			return "", nil, fileID{}, err
		}
		select {
		case m.unpacking <- struct{}{}:
		case <-ctx.Done():
			return "", nil, fileID{}, ctx.Err()
		}
		digest, sums, err := bundle.UnpackSums(ctx, path, dir, lim)
		<-m.unpacking
		after, serr := os.Stat(path)
		if serr != nil {
			return "", nil, fileID{}, serr
		}
		changed := identify(before) != identify(after)
		if !changed && (err == nil || !errors.Is(err, bundle.ErrCorrupt) || attempt > 0) {
			return digest, sums, identify(after), err
		}
		if attempt == 2 {
			if err == nil {
				err = errors.New("the file kept changing while it was read")
			}
			return "", nil, fileID{}, err
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			return "", nil, fileID{}, rerr
		}
		if err := bundle.WaitComplete(ctx, path, m.stable); err != nil {
			return "", nil, fileID{}, err
		}
	}
}
