package app

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"
)

var (
	errSuperseded = errors.New("superseded by a newer bundle")
	errUnchanged  = errors.New("bundle unchanged")
)

// ErrNotReady means a new version never answered its readiness check.
var ErrNotReady = errors.New("app did not become ready")

// deploy runs one bundle to live: unpack, plugins, units, readiness,
// switch, then retire the old version. On any failure the new version is
// discarded and the old one keeps serving untouched.
func (m *Manager) deploy(ctx context.Context, name, path string, w *worker) error {
	started := time.Now()
	m.inFlight.Add(1)
	defer m.deployDone()
	m.noteDeploying(name, path)
	v, err := m.startVersion(ctx, name, path, w, false)
	m.noteAttempt(name, v)
	switch {
	case errors.Is(err, errUnchanged):
		m.log.Debug("bundle unchanged, nothing to do", "app", name)
		m.noteResult(name, nil, nil, started)
		return nil
	case errors.Is(err, errSuperseded):
		m.log.Info("deploy superseded by a newer bundle", "app", name)
		m.noteResult(name, nil, err, started)
		return err
	case ctx.Err() != nil:
		m.log.Info("deploy interrupted by shutdown", "app", name, "err", err)
		return err
	case err != nil:
		m.log.Error("deploy failed; the previous version, if any, keeps serving", "app", name, "bundle", filepath.Base(path), "err", err, "steps", stepsOf(v))
		m.noteResult(name, nil, err, started)
		return err
	}
	if m.isCanary(v) {
		m.log.Info("canary running", "app", name, "version", v.id, "ports", v.portList(),
			"duration", time.Since(started).Round(time.Millisecond).String(), "steps", v.steps.String())
		m.noteResult(name, v, nil, started)
		return nil
	}
	m.log.Info("version live", "app", name, "version", v.id, "ports", v.portList(),
		"duration", time.Since(started).Round(time.Millisecond).String(), "steps", v.steps.String())
	m.keepBundle(v) // before "live" is reported, while incoming/ still holds this bundle
	m.noteResult(name, v, nil, started)
	return nil
}

// deployDone hands memory back to the OS when the last deploy of a burst
// ends: the Go runtime would otherwise keep the heap a burst of unpacks
// grew to (hundreds of MB after 100 bundles at once), with little live.
func (m *Manager) deployDone() {
	if m.inFlight.Add(-1) == 0 {
		debug.FreeOSMemory()
	}
}

// discard stops and deletes a version that never went live.
func (m *Manager) discard(ctx context.Context, v *version) {
	m.unreserveHosts(v.app)
	m.stopVersion(ctx, v)
}

// stopVersion stops units (webapps first), frees ports, deletes files.
func (m *Manager) stopVersion(ctx context.Context, v *version) {
	m.stopUnits(ctx, v)
	m.ports.Release(v.portList()...)
	m.releaseFronts(v)
	for _, f := range v.envFiles {
		os.Remove(f)
	}
	if v.dir != "" {
		if err := os.RemoveAll(v.dir); err != nil {
			m.log.Error("deleting version folder", "app", v.app, "dir", v.dir, "err", err)
		}
	}
}

// remove takes an app off the front door at once, then drains and stops it.
func (m *Manager) remove(ctx context.Context, name string) error {
	m.dropCanary(ctx, name)
	old := m.swapLive(name, nil)
	m.forget(name)
	m.dropMaintenance(name)
	dropStamps(name)
	if old == nil {
		return nil
	}
	if err := m.sync.Sync(ctx); err != nil {
		m.log.Error("removing app from nginx", "app", name, "err", err)
	}
	m.saveState()
	m.log.Info("app removed", "app", name, "version", old.id)
	m.retire(ctx, old)
	return nil
}

// stopUnits stops a version's units, webapps first.
func (m *Manager) stopUnits(ctx context.Context, v *version) {
	m.stopSleepers(ctx, v)
	for i := len(v.units) - 1; i >= 0; i-- {
		if err := m.units.Stop(ctx, v.units[i]); err != nil {
			m.log.Error("stopping unit", "app", v.app, "version", v.id, "unit", v.units[i], "err", err)
		}
		m.crashpoint("stopping")
	}
}
