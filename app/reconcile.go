package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// unitPrefix is what every unit running app code is named after.
const unitPrefix = "keter-app-"

// reconcile re-adopts every live version whose units all still run, with
// no restart and no port change, then clears what a crash left behind:
// units, folders and env files that belong to no live version.
func (m *Manager) reconcile(ctx context.Context) error {
	st, err := loadState(m.statePath())
	if err != nil {
		m.log.Error("ignoring unreadable state; running apps will be redeployed", "err", err)
	}
	running, err := m.units.List(ctx, unitPrefix)
	if err != nil {
		return fmt.Errorf("listing app units: %w", err)
	}
	byName := map[string]unitgen.Status{}
	for _, u := range running {
		byName[u.Name] = u
	}
	for name, rec := range st.Apps {
		v, why := m.adoptable(name, rec, byName)
		if v == nil {
			m.log.Warn("not re-adopting app; its bundle will be deployed again", "app", name, "version", rec.Version, "reason", why,
				"folder_kept", m.keepForRestore(name, rec))
			continue
		}
		m.holdPorts(v)
		// State written before front ports (or spares) has none: take them.
		if err := m.takeFronts(v, v); err != nil {
			return err
		}
		m.live[name] = v
		s := m.entry(name)
		s.LastResult, s.LastAt, s.LastDigest, s.LastBundle = "live", rec.DeployedAt, rec.Digest, rec.Bundle
		m.log.Info("re-adopted running version", "app", name, "version", v.id, "units", v.units)
	}

	canaries := m.adoptCanaries(st.Canaries, byName)
	var drained []*version
	for _, d := range st.Draining {
		if v := m.adoptDraining(d, byName); v != nil {
			drained = append(drained, v)
		}
	}

	keepUnits, keepDirs, keepFiles := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, v := range append(append(m.liveList(), drained...), canaries...) {
		for _, u := range append(append(v.units, v.jobUnitNames()...), v.sleeperUnits()...) {
			keepUnits[u] = true
		}
		keepDirs[v.dir] = true
		for _, f := range v.envFiles {
			keepFiles[f] = true
		}
	}
	for _, u := range running {
		if keepUnits[u.Name] || u.ActiveState == "inactive" {
			continue
		}
		m.log.Info("stopping orphaned unit", "unit", u.Name, "app", u.Meta.App, "version", u.Meta.Version)
		if err := m.units.Stop(ctx, u.Name); err != nil {
			m.log.Error("stopping orphaned unit", "unit", u.Name, "err", err)
		}
	}
	for _, d := range m.restoreDirs() {
		keepDirs[d] = true
	}
	removeAllBut(m, m.cfg.Temp(), keepDirs)
	removeAllBut(m, m.envDir(), keepFiles)
	m.adoptJobs(ctx, byName)
	m.saveState()
	if err := m.sync.Sync(ctx); err != nil {
		return fmt.Errorf("applying nginx config at start-up: %w", err)
	}
	for _, v := range drained {
		m.drainThenStop(ctx, v, m.draining[v])
	}
	return nil
}

// liveList is every live version; only reconcile calls it, before any
// deploy runs.
func (m *Manager) liveList() []*version {
	out := make([]*version, 0, len(m.live))
	for _, v := range m.live {
		out = append(out, v)
	}
	return out
}

// adoptable rebuilds a version from its record when all of its units are
// running; otherwise it says why not.
func (m *Manager) adoptable(name string, rec liveRecord, running map[string]unitgen.Status) (*version, string) {
	for _, u := range rec.Units {
		st, ok := running[u]
		if (!ok || (st.ActiveState != "active" && st.ActiveState != "reloading")) && !asleep(rec, u, running) {
			return nil, "unit " + u + " is not running"
		}
	}
	if _, err := os.Stat(rec.Bundle); err != nil {
		return nil, "bundle file is gone"
	}
	cfg, err := bundle.Load(rec.Dir)
	if err != nil {
		return nil, "unpacked folder unreadable: " + err.Error()
	}
	v, why := rebuild(name, rec, cfg)
	if why != "" {
		return nil, why
	}
	return v, ""
}

// rebuild makes a version from its record; cfg may be nil for a version
// that only drains.
func rebuild(name string, rec liveRecord, cfg *bundle.AppConfig) (*version, string) {
	v := &version{
		app: name, id: rec.Version, digest: rec.Digest, file: rec.File, bundle: rec.Bundle, dir: rec.Dir,
		cfg: cfg, units: rec.Units, jobs: rec.Jobs, envFiles: rec.EnvFiles, opEnv: rec.OperatorEnv, deployedAt: rec.DeployedAt, manifest: rec.Manifest, web: map[int][]*instance{},
	}
	for i, ports := range rec.Ports {
		if cfg != nil && (i < 0 || i >= len(cfg.Stanzas) || cfg.Stanzas[i].WebApp == nil) {
			return v, fmt.Sprintf("state names a port for stanza %d, which is no webapp", i)
		}
		for k, p := range ports {
			unit, err := instanceMeta(name, rec.Version, i, k, len(ports)).Unit()
			if err != nil {
				return v, err.Error()
			}
			in := &instance{unit: unit, port: p, sleep: sleeperOf(rec, unit)}
			if k < len(rec.Fronts[i]) {
				in.front = rec.Fronts[i][k]
			}
			v.web[i] = append(v.web[i], in)
		}
		if len(rec.Fronts[i]) > len(ports) {
			if v.spare == nil {
				v.spare = map[int][]int{}
			}
			v.spare[i] = rec.Fronts[i][len(ports):]
		}
	}
	v.canary = rec.CanaryFronts
	return v, ""
}

func removeAllBut(m *Manager, dir string, keep map[string]bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		m.log.Error("reading folder", "dir", dir, "err", err)
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if keep[p] {
			continue
		}
		m.log.Info("deleting orphaned file", "path", p)
		if err := os.RemoveAll(p); err != nil {
			m.log.Error("deleting orphaned file", "path", p, "err", err)
		}
	}
}
