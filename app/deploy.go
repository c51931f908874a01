package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"

	"github.com/keter-systemd/keter/internal/atomicfile"
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
	v, err := m.startVersion(ctx, name, path, w)
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
		m.log.Error("deploy failed; the previous version, if any, keeps serving", "app", name, "bundle", filepath.Base(path), "err", err)
		m.noteResult(name, nil, err, started)
		return err
	}
	m.log.Info("version live", "app", name, "version", v.id, "ports", v.portList(),
		"duration", time.Since(started).Round(time.Millisecond).String(), "steps", v.steps.String())
	m.keepBundle(v) // before "live" is reported, while incoming/ still holds this bundle
	m.noteResult(name, v, nil, started)
	return nil
}

func (m *Manager) startVersion(ctx context.Context, name, path string, w *worker) (v *version, err error) {
	steps := stepTimer{last: time.Now()}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading bundle %s: %w", filepath.Base(path), err)
	}
	cur := m.liveVersion(name)
	if cur != nil && cur.file == identify(fi) {
		return nil, errUnchanged // the same file again: a second event for one change
	}

	id := m.newVersionID()
	v = &version{
		app: name, id: id, bundle: path,
		dir:      filepath.Join(m.cfg.Temp(), name+"-"+id),
		ports:    map[int]int{},
		webUnits: map[int]string{},
	}
	defer func() { v.steps = steps }()
	defer func() {
		// On shutdown nothing is discarded: stopping keter never stops an
		// app, and the next start adopts or clears what is left.
		if err != nil && ctx.Err() == nil {
			m.discard(ctx, v)
		}
	}()
	lim := bundle.DefaultLimits()
	lim.MaxTotalBytes = m.cfg.MaxUnpackedBytes
	if v.digest, v.file, err = m.unpack(ctx, path, v.dir, lim); err != nil {
		return v, fmt.Errorf("unpacking %s: %w", filepath.Base(path), err)
	}
	steps.mark("unpack")
	if cur != nil && cur.digest == v.digest {
		m.touchLive(name, v.file) // same content copied again
		return v, errUnchanged
	}
	m.crashpoint("unpacked")
	var warns []string
	if v.cfg, warns, err = bundle.LoadWithWarnings(v.dir); err != nil {
		return v, fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}
	for _, w := range warns {
		m.log.Warn("bundle config: "+w, "app", name, "bundle", filepath.Base(path))
	}
	if err := m.reserveHosts(name, v.cfg.Hosts()); err != nil {
		return v, err
	}
	// Fronts first: each webapp unit's stop hook names its front port.
	if err := m.takeFronts(v, cur); err != nil {
		return v, err
	}

	var pluginEnv map[string]string
	if pg := v.cfg.Plugins.Postgres; pg != nil {
		if m.dbs == nil {
			return v, errors.New("bundle asks for the postgres plugin, but keter has no postgres connection")
		}
		if pluginEnv, err = m.dbs.Ensure(ctx, name, pg); err != nil {
			return v, err // the plugin names itself
		}
	}

	units, err := m.buildUnits(v, pluginEnv)
	if err != nil {
		return v, err
	}
	for _, u := range units {
		if err := m.startUnit(ctx, v, u); err != nil {
			return v, err
		}
	}
	steps.mark("start")
	m.crashpoint("started")
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil {
			continue
		}
		if err := m.waitReady(ctx, w, v.webUnits[i], v.ports[i], s.WebApp); err != nil {
			return v, err
		}
	}

	steps.mark("ready")
	m.crashpoint("ready")
	v.deployedAt = time.Now()
	old := m.swapLive(name, v)
	// State first: from here a crash or a restart re-adopts v, so what the
	// state says live is never behind what nginx may already serve.
	m.saveState()
	m.crashpoint("saved")
	if err := m.sync.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return v, fmt.Errorf("switching nginx to the new version: %w", err)
		}
		m.swapLive(name, old)
		m.saveState()
		if rerr := m.sync.Sync(ctx); rerr != nil {
			m.log.Error("restoring nginx after a failed switch", "app", name, "err", rerr)
		}
		return v, fmt.Errorf("switching nginx to the new version: %w", err)
	}
	steps.mark("switch")
	m.crashpoint("switched")
	if old != nil {
		m.retire(ctx, old)
	}
	return v, nil
}

// deployDone hands memory back to the OS when the last deploy of a burst
// ends: the Go runtime would otherwise keep the heap a burst of unpacks
// grew to (hundreds of MB after 100 bundles at once), with little live.
func (m *Manager) deployDone() {
	if m.inFlight.Add(-1) == 0 {
		debug.FreeOSMemory()
	}
}

// unpack reads the bundle once, hashing as it goes. A bundle renamed into
// incoming is complete at once; one still being copied reads as cut short
// or changes under us, and is then waited for and read again.
func (m *Manager) unpack(ctx context.Context, path, dir string, lim bundle.Limits) (string, fileID, error) {
	for attempt := 0; ; attempt++ {
		before, err := os.Stat(path)
		if err != nil {
			return "", fileID{}, err
		}
		select {
		case m.unpacking <- struct{}{}:
		case <-ctx.Done():
			return "", fileID{}, ctx.Err()
		}
		digest, err := bundle.UnpackDigest(ctx, path, dir, lim)
		<-m.unpacking
		after, serr := os.Stat(path)
		if serr != nil {
			return "", fileID{}, serr
		}
		changed := identify(before) != identify(after)
		if !changed && (err == nil || !errors.Is(err, bundle.ErrCorrupt) || attempt > 0) {
			return digest, identify(after), err
		}
		if attempt == 2 {
			if err == nil {
				err = errors.New("the file kept changing while it was read")
			}
			return "", fileID{}, err
		}
		if rerr := os.RemoveAll(dir); rerr != nil {
			return "", fileID{}, rerr
		}
		if err := bundle.WaitComplete(ctx, path, m.stable); err != nil {
			return "", fileID{}, err
		}
	}
}

// buildUnits turns stanzas into units: background first, then webapps,
// each webapp on a fresh port.
func (m *Manager) buildUnits(v *version, pluginEnv map[string]string) ([]unitgen.Unit, error) {
	var bg, web []unitgen.Unit
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil && s.Background == nil {
			continue
		}
		in := unitgen.Input{
			App: v.app, Version: v.id, Index: i, Stanza: s, Dir: v.dir,
			Global: m.cfg, PluginEnv: pluginEnv, LookupEnv: m.lookup, EnvDir: m.envDir(),
		}
		if s.WebApp != nil {
			port, err := m.ports.Take()
			if err != nil {
				return nil, err
			}
			v.ports[i] = port
			in.Port = port
			if m.hook != nil {
				unit, err := unitgen.UnitName(v.app, v.id, unitgen.StanzaName(s.Type, i))
				if err != nil {
					return nil, fmt.Errorf("stanzas[%d]: %w", i, err)
				}
				in.StopHook = m.hook(v.fronts[i], port, unit)
			}
		}
		u, err := unitgen.Build(in)
		if err != nil {
			return nil, fmt.Errorf("stanzas[%d]: %w", i, err)
		}
		if s.WebApp != nil {
			v.webUnits[i] = u.Name
			web = append(web, u)
		} else {
			bg = append(bg, u)
		}
	}
	return append(bg, web...), nil
}

func (m *Manager) startUnit(ctx context.Context, v *version, u unitgen.Unit) error {
	if u.EnvFile != "" {
		if err := atomicfile.Write(u.EnvFile, u.Secrets, 0o600); err != nil {
			return fmt.Errorf("writing environment of %s: %w", u.Name, err)
		}
		v.envFiles = append(v.envFiles, u.EnvFile)
	}
	v.units = append(v.units, u.Name)
	if err := m.units.Start(ctx, u); err != nil {
		return fmt.Errorf("starting %s: %w", u.Name, err)
	}
	m.log.Info("unit started", "app", v.app, "version", v.id, "unit", u.Name)
	return nil
}

// waitReady polls the webapp until it answers, its unit fails, a newer
// bundle arrives, or ensure-alive-time-bound runs out.
func (m *Manager) waitReady(ctx context.Context, w *worker, unit string, port int, s *bundle.WebApp) error {
	bound := time.Duration(s.EnsureAliveTimeBound) * time.Microsecond
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	p := newProbe(port, s.Hosts[0], s.HealthCheckPath)
	lastCheck := time.Now()
	var lastErr error
	for attempt := 0; ; attempt++ {
		if lastErr = p.once(ctx); lastErr == nil {
			// An answer counts only from our unit: another program may
			// have taken the port between keter's check and the app's
			// bind (another keter on the host with the same ranges).
			if lastErr = m.unitRunning(ctx, unit); lastErr == nil {
				if lastErr = m.units.Listens(ctx, unit, port); lastErr == nil {
					return nil
				}
			}
		}
		if time.Since(lastCheck) > 200*time.Millisecond || attempt == 3 {
			lastCheck = time.Now()
			if err := m.unitHealthy(ctx, unit); err != nil {
				return m.withLog(ctx, unit, s.Systemd, err)
			}
		}
		if w != nil && w.superseded() {
			return errSuperseded
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return m.withLog(context.WithoutCancel(ctx), unit, s.Systemd,
					fmt.Errorf("%w within ensure-alive-time-bound %s on port %d: %v", ErrNotReady, bound, port, lastErr))
			}
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
}

// unitStatus asks systemd about exactly one unit (List matches by prefix,
// and one app's name may prefix another's); found is false once it is gone.
func (m *Manager) unitStatus(ctx context.Context, unit string) (st unitgen.Status, found bool, err error) {
	sts, err := m.units.List(ctx, unit)
	if err != nil {
		return st, false, err
	}
	for _, st := range sts {
		if st.Name == unit {
			return st, true, nil
		}
	}
	return st, false, nil
}

// unitHealthy fails when systemd has given up on the unit or it keeps
// crashing while we wait for it.
func (m *Manager) unitHealthy(ctx context.Context, unit string) error {
	st, found, err := m.unitStatus(ctx, unit)
	switch {
	case err != nil:
		return nil // the probe decides; a bus hiccup is not the app's fault
	case !found:
		return fmt.Errorf("%w: unit %s is gone", ErrNotReady, unit)
	case st.ActiveState == "failed":
		return fmt.Errorf("%w: unit %s failed (%s)", ErrNotReady, unit, st.Result)
	case st.NRestarts >= 2:
		return fmt.Errorf("%w: unit %s is crash-looping (%d restarts)", ErrNotReady, unit, st.NRestarts)
	}
	return nil
}

// unitRunning fails unless systemd says the unit is active and running.
func (m *Manager) unitRunning(ctx context.Context, unit string) error {
	st, found, err := m.unitStatus(ctx, unit)
	switch {
	case err != nil:
		return fmt.Errorf("asking systemd about %s: %w", unit, err)
	case !found:
		return fmt.Errorf("port answered but unit %s is gone", unit)
	case st.ActiveState != "active" || st.SubState != "running":
		return fmt.Errorf("port answered but unit %s is %s (%s)", unit, st.ActiveState, st.SubState)
	}
	return nil
}

// withLog adds the app's last journal lines to a readiness error, and
// what they say about the sandbox (sd is the stanza's systemd: settings).
func (m *Manager) withLog(ctx context.Context, unit string, sd bundle.Systemd, err error) error {
	lines, jerr := m.units.Journal(ctx, unit, diagnoseLines)
	if jerr != nil {
		lines = nil
	}
	st, found, serr := m.unitStatus(ctx, unit)
	hint := sandboxHint(appOfUnit(unit), st, found && serr == nil, lines, unitgen.MemoryDenyWriteExecute(sd))
	lines = lines[max(0, len(lines)-15):]
	if len(lines) == 0 && hint == "" {
		return err
	}
	return &AppError{Err: err, Log: lines, Hint: hint}
}

// AppError is a deploy error with the last lines the app printed and,
// when they point at the sandbox, the setting to look at.
type AppError struct {
	Err  error
	Log  []string
	Hint string
}

func (e *AppError) Error() string {
	s := e.Err.Error()
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	if len(e.Log) > 0 {
		s += "; last log lines:\n  " + strings.Join(e.Log, "\n  ")
	}
	return s
}
func (e *AppError) Unwrap() error { return e.Err }

// discard stops and deletes a version that never went live.
func (m *Manager) discard(ctx context.Context, v *version) {
	m.unreserveHosts(v.app)
	m.stopVersion(ctx, v)
}

// retire drains and stops an old version in the background.
func (m *Manager) retire(ctx context.Context, v *version) {
	drain := m.drain
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		select {
		case <-time.After(drain):
		case <-ctx.Done():
			return // the next start stops it as an orphan
		}
		m.crashpoint("draining")
		ports := v.portList()
		m.stopVersion(context.WithoutCancel(ctx), v)
		if m.retired != nil {
			m.retired(ports)
		}
		m.log.Info("old version stopped", "app", v.app, "version", v.id)
	}()
}

// stopVersion stops units (webapps first), frees ports, deletes files.
func (m *Manager) stopVersion(ctx context.Context, v *version) {
	for i := len(v.units) - 1; i >= 0; i-- {
		if err := m.units.Stop(ctx, v.units[i]); err != nil {
			m.log.Error("stopping unit", "app", v.app, "version", v.id, "unit", v.units[i], "err", err)
		}
		m.crashpoint("stopping")
	}
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

// takeFronts gives v's webapps their front ports: from's for the same
// stanza (the live version's, so nginx's config stays as it is), else
// fresh ones. from may be v itself, to fill in what it lacks.
func (m *Manager) takeFronts(v, from *version) error {
	fronts := map[int]int{}
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil {
			continue
		}
		if from != nil && from.fronts[i] != 0 {
			fronts[i] = from.fronts[i]
			continue
		}
		f, err := m.ports.Take()
		if err != nil {
			return fmt.Errorf("front port of stanzas[%d]: %w", i, err)
		}
		fronts[i] = f
	}
	v.fronts = fronts
	return nil
}

// releaseFronts frees v's front ports the app's live version does not use.
func (m *Manager) releaseFronts(v *version) {
	inUse := map[int]bool{}
	m.mu.Lock()
	if live := m.live[v.app]; live != nil {
		for _, f := range live.fronts {
			inUse[f] = true
		}
	}
	m.mu.Unlock()
	for _, f := range v.fronts {
		if !inUse[f] {
			m.ports.Release(f)
		}
	}
}

// remove takes an app off the front door at once, then drains and stops it.
func (m *Manager) remove(ctx context.Context, name string) error {
	old := m.swapLive(name, nil)
	m.forget(name)
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
