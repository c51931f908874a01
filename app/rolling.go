package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

// Restarting in place, one instance at a time (keter restart). For each
// webapp instance in turn: its front (and the spare fronts the map sent
// to it) goes to the stanza's other instances, by the port map alone (no
// nginx reload); once no connection to its port is left (sock_diag, as an
// old version's drain, within the same drain time) its unit is restarted
// on the same port, and once it answers again its front comes back. So
// at every moment all instances but one serve. Background units are
// restarted first. The version, its folder, ports, env files and timers
// stay: nothing is unpacked, no release step runs.
//
// An instance that does not answer after its restart (its port taken
// meanwhile by another program, the app broken) is stopped and marked
// down (its front goes nowhere, as for a unit that stopped for good);
// the restart in place stops there, the other instances serve on, and
// Restart replaces the version instead (new units on new ports).

// unitRestarter restarts a unit in place; the dbus package implements it.
type unitRestarter interface {
	Restart(ctx context.Context, name string) error
	ResetFailed(ctx context.Context, name string) error
}

// restartUnit restarts a unit with its start counter flushed first: a
// manual start counts towards StartLimitBurst, and a background stanza
// with restart-count N (a burst of N+1 over an unbounded window) would
// refuse its (N+1)th keter restart ("start-limit-hit"). Its units get a
// fresh count, as a replacement's new units would.
func restartUnit(ctx context.Context, r unitRestarter, name string) error {
	_ = r.ResetFailed(ctx, name) // flushes the start rate limit; nothing to reset is fine
	return r.Restart(ctx, name)
}

// canRoll says why v cannot be restarted in place ("" when it can): a
// webapp stanza with a single instance would have nothing serving while
// it restarts, and units built from an operator env that changed since
// would leave instances of two environments serving together; both take
// a replacement by new units instead.
func (m *Manager) canRoll(v *version) string {
	if _, ok := m.units.(unitRestarter); !ok {
		return "keter's systemd connection cannot restart units"
	}
	if m.hook == nil {
		return "no port map (nginx.switch: reload): moving an instance's traffic would reload nginx"
	}
	if v.cfg == nil {
		return "the live version's config is unknown"
	}
	if m.operatorEnvID(v.app) != v.opEnv {
		return "the operator env changed since its units started"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for i, s := range v.cfg.Stanzas {
		if s.WebApp == nil {
			continue
		}
		if len(v.web[i]) < 2 {
			return fmt.Sprintf("stanzas[%d] has one instance", i)
		}
		for _, in := range v.web[i] {
			if in.down {
				return fmt.Sprintf("instance %s is down", in.unit)
			}
			if in.sleep != nil {
				// Its port is the socket unit's; waking and sleeping
				// are that unit's business, not a restart's.
				return fmt.Sprintf("stanzas[%d] sleeps when idle (idle-stop)", i)
			}
		}
	}
	return ""
}

// roll restarts v's units in place, one instance at a time.
func (m *Manager) roll(ctx context.Context, v *version, w *worker) error {
	started := time.Now()
	m.noteDeploying(v.app, v.bundle)
	n, err := m.rollUnits(ctx, v, w)
	switch {
	case errors.Is(err, errSuperseded):
		m.log.Info("restart superseded by a newer bundle", "app", v.app, "restarted", n)
		m.noteResult(v.app, nil, err, started)
		return err
	case ctx.Err() != nil:
		m.log.Info("restart interrupted by shutdown", "app", v.app, "restarted", n, "err", err)
		return err
	case err != nil:
		// The caller replaces the version, which notes the outcome.
		m.log.Warn("restart in place failed; the version is replaced instead", "app", v.app, "version", v.id, "restarted", n, "err", err)
		return err
	}
	m.log.Info("version restarted in place", "app", v.app, "version", v.id, "units", n,
		"duration", time.Since(started).Round(time.Millisecond).String())
	m.noteResult(v.app, v, nil, started)
	return nil
}

// rollUnits restarts background units, then each webapp instance in
// turn; n counts the units restarted.
func (m *Manager) rollUnits(ctx context.Context, v *version, w *worker) (n int, err error) {
	r := m.units.(unitRestarter)
	for _, u := range v.units {
		if in, _ := v.instanceOf(u); in != nil {
			continue
		}
		if err := restartUnit(ctx, r, u); err != nil {
			return n, err
		}
		m.log.Info("unit restarted", "app", v.app, "version", v.id, "unit", u)
		n++
	}
	idx := make([]int, 0, len(v.web))
	for i := range v.web {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	for _, i := range idx {
		s := v.cfg.Stanzas[i].WebApp
		for _, in := range v.web[i] {
			if w != nil && w.superseded() {
				return n, errSuperseded
			}
			if err := m.restartInstance(ctx, v, in, s, r); err != nil {
				return n, err
			}
			n++
		}
	}
	return n, nil
}

// restartInstance takes one instance out of rotation, lets it drain,
// restarts it and puts it back once it answers.
func (m *Manager) restartInstance(ctx context.Context, v *version, in *instance, s *bundle.WebApp, r unitRestarter) error {
	m.setResting(in, true)
	if err := m.sync.Sync(ctx); err != nil {
		m.setResting(in, false)
		return fmt.Errorf("taking %s out of rotation: %w", in.unit, errors.Join(err, m.sync.Sync(context.WithoutCancel(ctx))))
	}
	// Shutting down: what is resting is not saved, the next start maps
	// every instance again.
	how, ok := m.waitPortsDrained(ctx, v, []int{in.port}, time.Now().Add(m.drainOf(v)))
	if !ok {
		return ctx.Err()
	}
	m.log.Info("instance out of rotation; restarting it", "app", v.app, "version", v.id, "unit", in.unit, "port", in.port, "drained", how)
	err := restartUnit(ctx, r, in.unit)
	if err == nil {
		err = m.waitReady(ctx, nil, in.unit, in.port, nil, s)
	}
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		// Not serving: out for good, until the next deploy or restart.
		if serr := m.units.Stop(context.WithoutCancel(ctx), in.unit); serr != nil {
			m.log.Error("stopping an instance that did not come back", "unit", in.unit, "err", serr)
		}
		m.mu.Lock()
		in.resting, in.down = false, true
		m.mu.Unlock()
		if serr := m.sync.Sync(context.WithoutCancel(ctx)); serr != nil {
			m.log.Error("taking a stopped instance out of nginx", "unit", in.unit, "err", serr)
		}
		return fmt.Errorf("restarting %s in place (stopped; the other instances serve on): %w", in.unit, err)
	}
	m.setResting(in, false)
	if err := m.sync.Sync(ctx); err != nil {
		return fmt.Errorf("putting %s back in rotation: %w", in.unit, err)
	}
	m.log.Info("instance back in rotation", "app", v.app, "version", v.id, "unit", in.unit, "port", in.port)
	return nil
}

func (m *Manager) setResting(in *instance, resting bool) {
	m.mu.Lock()
	in.resting = resting
	m.mu.Unlock()
}

// operatorEnvID identifies app name's operator env file as it is now
// (zero when there is none): every write replaces the file (a new inode).
func (m *Manager) operatorEnvID(name string) fileID {
	fi, err := os.Stat(m.operatorEnvPath(name))
	if err != nil {
		return fileID{}
	}
	return identify(fi)
}
