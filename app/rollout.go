package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// rollout brings one new version of an app up: read the bundle, start
// every unit (each webapp stanza's instances on ports of their own), wait
// until every instance is ready. The Manager then switches the front door
// to it (golive) and retires the version it replaces. On failure, what
// the rollout started is stopped and deleted; the live version is never
// touched.
type rollout struct {
	m     *Manager
	v     *version
	cur   *version // the live version, nil on a first deploy
	w     *worker  // tells whether a newer bundle is waiting
	steps stepTimer
	// again replaces cur with its own bundle, read from src (keter
	// restart): no unchanged-bundle check, same digest and bundle file.
	again bool
	src   string
	// canary: the version starts beside the live one as its canary.
	canary bool
	// restored: the version is a kept folder started again after a reboot
	// (see restore.go); its sleepers stay asleep.
	restored bool
}

// startVersion runs a bundle up to live (see rollout); errUnchanged when
// it is the live bundle again. With again, path holds the live bundle's
// content and the live version is replaced all the same (see restart).
func (m *Manager) startVersion(ctx context.Context, name, path string, w *worker, again bool) (v *version, err error) {
	r := &rollout{m: m, w: w, cur: m.liveVersion(name), steps: stepTimer{last: time.Now()}, again: again}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("reading bundle %s: %w", filepath.Base(path), err)
	}
	if again && r.cur == nil {
		return nil, fmt.Errorf("restarting %s: %w", name, ErrNotLive)
	}
	if !again && r.cur != nil && r.cur.file == identify(fi) {
		return nil, errUnchanged // the same file again: a second event for one change
	}
	r.canary = !again && r.cur != nil && m.canaryArmed(name)
	if r.canary && m.sameAsCanary(name, identify(fi), "") {
		return nil, errUnchanged
	}
	id := m.newVersionID()
	r.v = &version{app: name, id: id, bundle: path, dir: filepath.Join(m.cfg.Temp(), name+"-"+id), web: map[int][]*instance{}}
	if again {
		r.src, r.v.bundle = path, r.cur.bundle
	}
	defer func() { r.v.steps = r.steps }()
	defer func() {
		// On shutdown nothing is discarded: stopping keter never stops an
		// app, and the next start adopts or clears what is left.
		if err != nil && ctx.Err() == nil {
			m.discard(ctx, r.v)
		}
	}()
	if err := r.read(ctx); err != nil {
		return r.v, err
	}
	if r.canary {
		if err := canaryFits(r.cur, r.v); err != nil {
			return r.v, err
		}
	}
	env, err := r.plugins(ctx)
	if err != nil {
		return r.v, err
	}
	if err := r.release(ctx, env); err != nil {
		return r.v, err
	}
	if err := m.prepareJobs(r.v, env); err != nil {
		return r.v, err
	}
	if err := r.start(ctx, env); err != nil {
		return r.v, err
	}
	if err := r.ready(ctx); err != nil {
		return r.v, err
	}
	if r.canary {
		return r.v, m.goCanary(ctx, r)
	}
	return r.v, m.golive(ctx, r)
}

// read unpacks the bundle, reads its config, claims its hosts and gives
// each webapp instance a port and a front port.
func (r *rollout) read(ctx context.Context) error {
	m, v := r.m, r.v
	lim := bundle.DefaultLimits()
	lim.MaxTotalBytes = m.cfg.MaxUnpackedBytes
	src := v.bundle
	if r.src != "" {
		src = r.src
	}
	var err error
	if !r.again && r.cur == nil && m.restoreDir(v, src) {
		r.restored = true
		r.steps.mark("verify")
	} else {
		var sums bundle.Sums
		if v.digest, sums, v.file, err = m.unpack(ctx, src, v.dir, lim); err != nil {
			return fmt.Errorf("unpacking %s: %w", filepath.Base(src), err)
		}
		// Hashed before anything runs from it (see restore.go).
		if v.manifest, err = bundle.ManifestWith(v.dir, sums); err != nil {
			m.log.Warn("hashing unpacked folder: a reboot will unpack it again", "app", v.app, "err", err)
		}
		r.steps.mark("unpack")
	}
	if r.again {
		if v.digest != r.cur.digest {
			return fmt.Errorf("restarting: %s is not the live bundle (sha256 %.12s, live %.12s)", src, v.digest, r.cur.digest)
		}
		v.file = r.cur.file // still the live bundle's file in incoming
	} else if r.cur != nil && r.cur.digest == v.digest {
		m.touchLive(v.app, v.file) // same content copied again
		return errUnchanged
	} else if r.canary && m.sameAsCanary(v.app, fileID{}, v.digest) {
		return errUnchanged // the canary's bundle again
	}
	m.crashpoint("unpacked")
	var warns []string
	if v.cfg, warns, err = bundle.LoadWithWarnings(v.dir); err != nil {
		return fmt.Errorf("reading %s: %w", filepath.Base(v.bundle), err)
	}
	for _, w := range warns {
		m.log.Warn("bundle config: "+w, "app", v.app, "bundle", filepath.Base(v.bundle))
	}
	if err := m.reserveHosts(v.app, v.cfg.Hosts()); err != nil {
		return err
	}
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil {
			continue
		}
		n := s.WebApp.InstanceCount()
		for k := range n {
			port, err := m.ports.Take()
			if err != nil {
				return err
			}
			unit, err := instanceMeta(v.app, v.id, i, k, n).Unit()
			if err != nil {
				return fmt.Errorf("stanzas[%d]: %w", i, err)
			}
			in := &instance{unit: unit, port: port}
			if err := m.planSleep(in, instanceMeta(v.app, v.id, i, k, n), s.WebApp); err != nil {
				return fmt.Errorf("stanzas[%d]: %w", i, err)
			}
			v.web[i] = append(v.web[i], in)
		}
	}
	// Fronts before units: each webapp unit's stop hook names its front.
	return m.takeFronts(v, r.cur)
}

// plugins provisions what the bundle asks for (the postgres database).
func (r *rollout) plugins(ctx context.Context) (map[string]string, error) {
	pg := r.v.cfg.Plugins.Postgres
	if pg == nil {
		return nil, nil
	}
	if r.m.dbs == nil {
		return nil, errors.New("bundle asks for the postgres plugin, but keter has no postgres connection")
	}
	return r.m.dbs.Ensure(ctx, r.v.app, pg) // the plugin names itself in errors
}

// start starts every unit: background stanzas first, then every webapp
// instance.
func (r *rollout) start(ctx context.Context, pluginEnv map[string]string) error {
	units, err := r.units(pluginEnv)
	if err != nil {
		return err
	}
	release, err := r.m.startSlot(ctx)
	if err != nil {
		return err
	}
	defer release()
	for _, u := range units {
		if err := r.startUnit(ctx, u); err != nil {
			return err
		}
	}
	if err := r.startSleepers(ctx, pluginEnv); err != nil {
		return err
	}
	r.steps.mark("start")
	r.m.crashpoint("started")
	return nil
}

// startSlot waits until fewer than cap(m.starting) versions are having
// their units started, and returns the func that gives the slot back.
// A start job ends once systemd has set up the unit's sandbox (its
// namespaces and mounts) and executed its process, and that setup
// serialises on the kernel's mount lock: with 1000 bundles dropped at
// once and no bound, hundreds of units were being set up at once, their
// processes blocked reading /proc/self/mountinfo (load average 270 on 2
// cores), and units failed systemd's start timeout. Readiness waits are
// not bounded: a started app costs nothing while keter waits for it.
func (m *Manager) startSlot(ctx context.Context) (func(), error) {
	select {
	case m.starting <- struct{}{}:
		return func() { <-m.starting }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (r *rollout) units(pluginEnv map[string]string) ([]unitgen.Unit, error) {
	m, v := r.m, r.v
	v.opEnv = m.operatorEnvID(v.app) // before reading: a change in between shows as one
	operator, err := m.OperatorEnv(v.app)
	if err != nil {
		return nil, err
	}
	var bg, web []unitgen.Unit
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil && s.Background == nil {
			continue
		}
		in := m.unitInput(v, i, s, pluginEnv, operator)
		if s.Background != nil {
			u, err := unitgen.Build(in)
			if err != nil {
				return nil, fmt.Errorf("stanzas[%d]: %w", i, err)
			}
			bg = append(bg, u)
			continue
		}
		insts := v.web[i]
		for k, inst := range insts {
			if inst.sleep != nil {
				continue // startSleepers
			}
			in.Port = inst.port
			if len(insts) > 1 {
				in.Instance = k + 1
			}
			if m.hook != nil {
				in.StopHook = m.hook(inst.front, inst.port, inst.unit)
			}
			u, err := unitgen.Build(in)
			if err != nil {
				return nil, fmt.Errorf("stanzas[%d]: %w", i, err)
			}
			web = append(web, u)
		}
	}
	return append(bg, web...), nil
}

// input is what unitgen gets for stanza i: its units, and the release
// step that borrows its sandbox and environment.
func (r *rollout) input(i int, pluginEnv map[string]string) (unitgen.Input, error) {
	m, v := r.m, r.v
	operator, err := m.OperatorEnv(v.app)
	if err != nil {
		return unitgen.Input{}, err
	}
	return m.unitInput(v, i, v.cfg.Stanzas[i], pluginEnv, operator), nil
}

func (r *rollout) startUnit(ctx context.Context, u unitgen.Unit) error {
	v := r.v
	if err := v.writeUnitFiles(u); err != nil {
		return err
	}
	v.units = append(v.units, u.Name)
	if err := r.m.units.Start(ctx, u); err != nil {
		// The journal goes to the status's log lines, shown only to
		// those who may read the app's log, never into the error's text.
		return r.m.withLog(ctx, u.Name, r.systemdOf(u.Name), fmt.Errorf("starting %s: %w", u.Name, err))
	}
	r.m.log.Info("unit started", "app", v.app, "version", v.id, "unit", u.Name)
	return nil
}

// ready waits until every webapp instance answers. They started
// together, so waiting for them in turn takes as long as the slowest.
func (r *rollout) ready(ctx context.Context) error {
	for i, s := range r.v.cfg.Stanzas {
		if s.WebApp == nil {
			continue
		}
		for _, in := range r.v.web[i] {
			if in.sleep != nil && r.restored {
				// It served before the reboot from this very folder: a
				// probe would wake it, and a sleeper waits for a request.
				r.m.log.Info("asleep after the reboot until its first request", "app", r.v.app, "unit", in.unit, "socket", in.sleep.socket)
				continue
			}
			if err := r.m.waitReady(ctx, r.w, in.unit, in.port, in.sleep, s.WebApp); err != nil {
				return err
			}
		}
	}
	r.steps.mark("ready")
	r.m.crashpoint("ready")
	return nil
}

// golive makes the rollout's version live: recorded first, then the front
// door switched; the version it replaces retires. A failed switch puts the
// previous version back.
func (m *Manager) golive(ctx context.Context, r *rollout) error {
	v := r.v
	v.deployedAt = time.Now()
	old := m.swapLive(v.app, v)
	// State first: from here a crash or a restart re-adopts v, so what the
	// state says live is never behind what nginx may already serve.
	m.saveState()
	m.crashpoint("saved")
	if err := m.sync.Sync(ctx); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("switching nginx to the new version: %w", err)
		}
		m.swapLive(v.app, old)
		m.saveState()
		if rerr := m.sync.Sync(ctx); rerr != nil {
			m.log.Error("restoring nginx after a failed switch", "app", v.app, "err", rerr)
		}
		return fmt.Errorf("switching nginx to the new version: %w", err)
	}
	r.steps.mark("switch")
	m.crashpoint("switched")
	if old != nil {
		m.retire(ctx, old) // stops its timers
	}
	m.startJobs(ctx, v)
	return nil
}

// systemdOf is the systemd: settings of the stanza unit belongs to (none
// if its name does not say).
func (r *rollout) systemdOf(unit string) bundle.Systemd {
	meta, ok := unitgen.ParseUnitName(unit)
	if !ok {
		return bundle.Systemd{}
	}
	digits := strings.TrimLeftFunc(meta.Stanza, func(c rune) bool { return c < '0' || c > '9' })
	i, err := strconv.Atoi(digits)
	if err != nil || i < 0 || i >= len(r.v.cfg.Stanzas) {
		return bundle.Systemd{}
	}
	return systemdOf(r.v.cfg.Stanzas[i])
}
