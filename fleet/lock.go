package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// ErrBusy means another rollout holds the app's lock on this host.
var ErrBusy = errors.New("another rollout holds the lock")

// lockDir is where a host keeps rollout locks and records: under
// incoming/ because that is the one folder the deploy group may write
// (its watcher ignores dotfiles and folders).
func lockDir(incoming string) string { return filepath.Join(incoming, ".rollout") }

// lock is an app's rollout lock on this host: an flock held by this
// process, so it ends with the process however the ssh session ends.
type lock struct {
	f      *os.File
	holder string // the holder file: who, since when
}

// tryLock takes app's lock without waiting; with ErrBusy it returns who
// holds it.
func tryLock(dir, app string, h Holder) (*lock, *Holder, error) {
	if err := os.MkdirAll(dir, 0o770); err != nil {
		return nil, nil, fmt.Errorf("making lock folder: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, app+".lock"), os.O_CREATE|os.O_RDWR, 0o660)
	if err != nil {
		return nil, nil, fmt.Errorf("opening rollout lock: %w", err)
	}
	l := &lock{f: f, holder: filepath.Join(dir, app+".holder")}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, readHolder(l.holder), ErrBusy
		}
		return nil, nil, fmt.Errorf("taking rollout lock: %w", err)
	}
	data, _ := json.Marshal(h)
	if err := atomicfile.Write(l.holder, data, 0o660); err != nil {
		l.release()
		return nil, nil, fmt.Errorf("recording rollout lock holder: %w", err)
	}
	return l, nil, nil
}

// waitLock polls until the lock is ours or ctx ends, calling waiting once
// with the holder.
func waitLock(ctx context.Context, dir, app string, h Holder, waiting func(*Holder)) (*lock, error) {
	told := false
	for {
		l, holder, err := tryLock(dir, app, h)
		if !errors.Is(err, ErrBusy) {
			return l, err
		}
		if !told {
			waiting(holder)
			told = true
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// readHolder is nil when the holder cannot be read (a holder between
// taking the lock and writing its name).
func readHolder(path string) *Holder {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var h Holder
	if json.Unmarshal(data, &h) != nil {
		return nil
	}
	return &h
}

func (l *lock) release() {
	os.Remove(l.holder)
	l.f.Close() // drops the flock
}
