package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

// ErrDeployFailed means the awaited bundle was tried and refused.
var ErrDeployFailed = errors.New("deploy failed")

// ErrReplaced means the awaited bundle is no longer the app's bundle in
// the incoming folder: a newer one replaced it, or it was deleted.
var ErrReplaced = errors.New("bundle was replaced or removed before it went live")

// WaitDeploy waits until the bundle with digest, placed in the incoming
// folder as NAME.keter at or after since, is live (nil) or refused
// (ErrDeployFailed; the status holds the error and the app's last log
// lines). It polls the status, so it only needs the records deploy keeps.
func (m *Manager) WaitDeploy(ctx context.Context, name, digest string, since time.Time) (AppStatus, error) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var seen incomingFile
	for {
		s, ok := m.appStatus(name)
		switch {
		case ok && s.Live != nil && s.Live.Digest == digest && !s.Deploying:
			return s, nil
		case ok && s.Canary != nil && s.Canary.Version != nil && s.Canary.Version.Digest == digest && !s.Deploying:
			return s, nil // it runs as the canary
		case ok && !s.Deploying && !s.LastAt.Before(since) && s.LastDigest == digest && s.LastResult == ResultFailed:
			return s, fmt.Errorf("%w: %s", ErrDeployFailed, s.LastError)
		case !ok || (!s.Deploying && !s.LastAt.Before(since)):
			// Something else finished (or the app is gone): only give up
			// when our bundle is no longer the one waiting in incoming.
			if !seen.is(filepath.Join(m.cfg.Incoming(), name+".keter"), digest) {
				return s, ErrReplaced
			}
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-t.C:
		}
	}
}

func (m *Manager) appStatus(name string) (AppStatus, bool) {
	for _, s := range m.Status() {
		if s.Name == name {
			return s, true
		}
	}
	return AppStatus{Name: name}, false
}

// incomingFile remembers the last file hashed, so waiting does not hash
// an unchanged bundle again.
type incomingFile struct {
	fi     os.FileInfo
	digest string
}

func (c *incomingFile) is(path, digest string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	if c.fi == nil || !os.SameFile(c.fi, fi) || c.fi.ModTime() != fi.ModTime() || c.fi.Size() != fi.Size() {
		d, err := bundle.Digest(path)
		if err != nil {
			return false
		}
		c.fi, c.digest = fi, d
	}
	return c.digest == digest
}
