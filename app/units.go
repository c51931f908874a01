package app

import (
	"context"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Crash loops: systemd restarts a crashed webapp after 100 ms and ends a
// fast loop itself (unitgen.WebStartLimitBurst starts a minute), also
// while keter is not running. keter ends the slow ones: a live unit that
// keeps crashing, never up for crashQuiet between two crashes, for
// crashLoopFor, is stopped, and its app reported failed. A short outage
// of something the app needs (its database down for seconds) is ridden
// out.
var (
	crashLoopFor = 60 * time.Second
	crashQuiet   = 10 * time.Second
)

// unitWatch is what keter remembers of one live unit's restarts.
type unitWatch struct {
	restarts    uint32
	lastRestart time.Time
	loopSince   time.Time // first restart of the current crash streak
}

// followUnits reads unit states until ctx ends: a live version's unit that
// stopped for good takes its front out of the map (its stop hook already
// took the element out; the next full map write must not put it back),
// and a crash loop is ended.
func (m *Manager) followUnits(ctx context.Context, events <-chan unitgen.Status) {
	watch := map[string]*unitWatch{}
	for {
		var s unitgen.Status
		var ok bool
		select {
		case <-ctx.Done():
			return
		case s, ok = <-events:
			if !ok {
				if ctx.Err() == nil {
					m.log.Error("lost systemd's unit events; a stopped app unit may keep its front port until keter restarts")
				}
				return
			}
		}
		m.canaryUnit(ctx, s)
		v, in := m.liveUnit(s)
		if v == nil {
			delete(watch, s.Name)
			continue
		}
		switch s.ActiveState {
		case "inactive", "failed", "gone":
			delete(watch, s.Name)
			if in != nil && in.sleep != nil && s.Name == in.unit && s.ActiveState == "inactive" {
				continue // asleep: its socket holds its port
			}
			m.unitDown(ctx, v, in, s)
			continue
		}
		w := watch[s.Name]
		if w == nil {
			w = &unitWatch{restarts: s.NRestarts}
			watch[s.Name] = w
			continue
		}
		if s.NRestarts < w.restarts { // keter restart: systemd counts anew
			w.restarts, w.loopSince = s.NRestarts, time.Time{}
			continue
		}
		if s.NRestarts == w.restarts {
			continue
		}
		now := time.Now()
		w.restarts = s.NRestarts
		if w.loopSince.IsZero() || now.Sub(w.lastRestart) > crashQuiet {
			w.loopSince = now
		}
		w.lastRestart = now
		if now.Sub(w.loopSince) >= crashLoopFor {
			m.log.Error("unit keeps crashing; stopping it", "app", v.app, "version", v.id, "unit", s.Name,
				"restarts", s.NRestarts, "for", now.Sub(w.loopSince).Round(time.Second).String())
			m.noteCrashLoop(v.app, s.Name, now.Sub(w.loopSince))
			go func() {
				if err := m.units.Stop(context.WithoutCancel(ctx), s.Name); err != nil {
					m.log.Error("stopping a crash-looping unit", "unit", s.Name, "err", err)
				}
			}()
		}
	}
}

// liveUnit finds the live version s belongs to; in is nil for a
// background unit.
func (m *Manager) liveUnit(s unitgen.Status) (*version, *instance) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v := m.live[s.Meta.App]
	if v == nil || v.id != s.Meta.Version {
		return nil, nil
	}
	in, _ := v.instanceOf(s.Name)
	return v, in
}

// unitDown marks a live webapp instance as not serving and takes its
// front out of the map.
func (m *Manager) unitDown(ctx context.Context, v *version, in *instance, s unitgen.Status) {
	m.mu.Lock()
	if in == nil || in.down || in.resting || m.live[v.app] != v {
		m.mu.Unlock()
		return
	}
	in.down = true
	m.mu.Unlock()
	m.log.Warn("a unit of a live version stopped; its app serves nothing there until it is deployed again",
		"app", v.app, "version", v.id, "unit", s.Name, "state", s.ActiveState, "result", s.Result)
	if err := m.sync.Sync(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("taking a stopped unit's port out of nginx", "app", v.app, "err", err)
	}
}
