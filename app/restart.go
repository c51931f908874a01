package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"
)

// ErrNotLive means the app has no live version to replace.
var ErrNotLive = errors.New("no version is live")

// Restart restarts app name's live version (keter restart), for an app
// that leaks memory or read a file at start: its instances one at a time
// in place where every webapp stanza has two or more (see roll), else by
// a replacement (see Replace). It waits for the outcome. A deploy under
// way finishes first and is then restarted; a bundle still waiting is
// deployed instead, when it goes live. The release step does not run
// again.
func (m *Manager) Restart(ctx context.Context, name string) error {
	return m.restartAs(ctx, name, false)
}

// Replace replaces app name's live version with its own bundle, the way
// a deploy replaces it (new units on new ports, every instance ready, the
// switch, the old version drained): for new operator env, which every
// unit then reads at once. Otherwise as Restart.
func (m *Manager) Replace(ctx context.Context, name string) error {
	return m.restartAs(ctx, name, true)
}

func (m *Manager) restartAs(ctx context.Context, name string, replace bool) error {
	if m.liveVersion(name) == nil {
		m.mu.Lock()
		_, known := m.status[name]
		m.mu.Unlock()
		if !known {
			return fmt.Errorf("restarting %q: %w", name, ErrUnknownApp)
		}
		return fmt.Errorf("restarting %q: %w", name, ErrNotLive)
	}
	done := make(chan error, 1)
	m.enqueue(ctx, name, request{restart: true, replace: replace, done: []chan error{done}})
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// restart runs in the app's worker: the live version in place, one
// instance at a time, when it can (see canRoll); else, or when that
// fails (an instance that does not come back: its port taken meanwhile
// by another program, the app broken), the live version again from the
// bundle it was deployed from, on new ports.
func (m *Manager) restart(ctx context.Context, name string, w *worker, replace bool) error {
	cur := m.liveVersion(name)
	if cur == nil {
		return fmt.Errorf("restarting %q: %w", name, ErrNotLive)
	}
	if !replace {
		why := m.canRoll(cur)
		if why == "" {
			err := m.roll(ctx, cur, w)
			if err == nil || errors.Is(err, errSuperseded) || ctx.Err() != nil || m.liveVersion(name) != cur {
				return err
			}
			why = "restarting in place failed"
		}
		m.log.Info("restarting by a replacement", "app", name, "version", cur.id, "why", why)
	}
	src, err := m.liveBundle(cur)
	if err != nil {
		return err
	}
	started := time.Now()
	m.inFlight.Add(1)
	defer m.deployDone()
	m.noteDeploying(name, cur.bundle)
	v, err := m.startVersion(ctx, name, src, w, true)
	m.noteAttempt(name, v)
	switch {
	case errors.Is(err, errSuperseded):
		m.log.Info("restart superseded by a newer bundle", "app", name)
		m.noteResult(name, nil, err, started)
		return err
	case ctx.Err() != nil:
		m.log.Info("restart interrupted by shutdown", "app", name, "err", err)
		return err
	case err != nil:
		m.log.Error("restart failed; the live version keeps serving", "app", name, "version", cur.id, "err", err)
		m.noteResult(name, nil, err, started)
		return err
	}
	m.log.Info("version live", "app", name, "version", v.id, "replaces", cur.id, "reason", "restart", "ports", v.portList(),
		"duration", time.Since(started).Round(time.Millisecond).String(), "steps", v.steps.String())
	m.noteResult(name, v, nil, started)
	return nil
}

// liveBundle finds the file holding the live version's bundle: its copy
// kept for rollback (root's, written once), else the incoming file while
// it is still the one deployed. The incoming file may hold a newer bundle
// by now, even one that failed: a restart replaces what is live.
func (m *Manager) liveBundle(cur *version) (string, error) {
	kept, err := m.KeptBundles(cur.app)
	if err != nil {
		return "", err
	}
	for _, k := range kept {
		if k.Digest == cur.digest {
			return k.Path, nil
		}
	}
	if fi, err := os.Stat(cur.bundle); err == nil && identify(fi) == cur.file {
		return cur.bundle, nil
	}
	return "", fmt.Errorf("restarting %s: no copy of the live bundle (sha256 %.12s) is left: none kept in %s and %s has changed; deploy it again", cur.app, cur.digest, m.bundlesDir(cur.app), cur.bundle)
}
