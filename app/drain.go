package app

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// Draining. After a switch the old version keeps running until nothing it
// serves is left: nginx retires its kept connections to it by itself
// within the proxy's switch bound, and the answers in flight (a stream, a
// download, a WebSocket) run on. It is stopped once no connection to its
// ports is left, or when its drain time runs out, whichever comes first;
// only then does it get SIGTERM. Draining versions are kept in the state
// file with their deadlines, so a keter restart or crash does not cut them
// short: the next start takes them up again.

// drainPoll is how often a draining version's connections are counted.
const drainPoll = 100 * time.Millisecond

// drainRecord is a draining version in the state file.
type drainRecord struct {
	App   string    `json:"app"`
	Until time.Time `json:"until"`
	liveRecord
}

// drainOf is how long v may drain at most: the bundle's own drain, else
// graceful-drain-micros, and never less than the proxy needs to retire
// the connections it kept to v.
func (m *Manager) drainOf(v *version) time.Duration {
	d := m.drain
	if v.cfg != nil && v.cfg.Drain > 0 {
		d = v.cfg.Drain
	}
	return max(d, m.minDrain)
}

// retire drains and stops an old version in the background.
func (m *Manager) retire(ctx context.Context, v *version) {
	until := time.Now().Add(m.drainOf(v))
	m.stopTimers(ctx, v)
	m.mu.Lock()
	m.draining[v] = until
	m.mu.Unlock()
	m.saveState()
	m.drainThenStop(ctx, v, until)
}

// drainThenStop waits for v to drain (see waitDrained), then stops it.
// When ctx ends first v is left running: the next start takes it up again.
func (m *Manager) drainThenStop(ctx context.Context, v *version, until time.Time) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		how, ok := m.waitDrained(ctx, v, until)
		if !ok {
			return
		}
		m.crashpoint("draining")
		ports := v.portList()
		if len(v.jobs) > 0 || m.execsIn(v) > 0 {
			// Its jobs' runs and keter exec commands under way finish
			// first, in its folder.
			m.stopUnits(context.WithoutCancel(ctx), v)
			if !m.waitJobs(ctx, v) || !m.waitExecs(ctx, v) {
				return
			}
		}
		m.stopVersion(context.WithoutCancel(ctx), v)
		m.mu.Lock()
		delete(m.draining, v)
		m.mu.Unlock()
		m.saveState()
		if m.retired != nil {
			m.retired(ports)
		}
		m.log.Info("old version stopped", "app", v.app, "version", v.id, "drained", how)
	}()
}

// waitDrained returns once no connection to v's ports is left (seen twice
// in a row, so a connection being accepted between two looks is not
// missed) or until has passed; ok is false when ctx ended first.
func (m *Manager) waitDrained(ctx context.Context, v *version, until time.Time) (how string, ok bool) {
	return m.waitPortsDrained(ctx, v, v.portList(), until)
}

// waitPortsDrained is waitDrained for some of v's ports.
func (m *Manager) waitPortsDrained(ctx context.Context, v *version, ports []int, until time.Time) (how string, ok bool) {
	start, empty, warned := time.Now(), 0, false
	open := -1
	for {
		left := time.Until(until)
		if left <= 0 {
			if open < 0 {
				return "drain time over", true
			}
			return fmt.Sprintf("drain time over with %d connections open", open), true
		}
		select {
		case <-time.After(min(drainPoll, left)):
		case <-ctx.Done():
			return "", false
		}
		if m.serving == nil {
			continue
		}
		n, err := m.serving(ports)
		if err != nil {
			if !warned {
				m.log.Warn("cannot count an old version's connections; it drains for its whole drain time", "app", v.app, "version", v.id, "err", err)
				warned = true
			}
			continue
		}
		open = n
		if n > 0 {
			empty = 0
			continue
		}
		if empty++; empty >= 2 {
			return "no connection left after " + time.Since(start).Round(time.Millisecond).String(), true
		}
	}
}

// drainingRecords lists the draining versions for the state file; m.mu
// must be held.
func (m *Manager) drainingRecords() []drainRecord {
	var out []drainRecord
	for v, until := range m.draining {
		out = append(out, drainRecord{App: v.app, Until: until, liveRecord: v.record()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].App+"/"+out[i].Version < out[j].App+"/"+out[j].Version })
	return out
}

// adoptDraining takes up a version that was draining when keter stopped,
// if any of its units still runs: its ports stay taken until it is
// stopped, at its old deadline.
func (m *Manager) adoptDraining(d drainRecord, running map[string]unitgen.Status) *version {
	alive := false
	for _, u := range append(d.Units, jobServices(d.Jobs)...) {
		if st, ok := running[u]; ok && st.ActiveState != "inactive" && st.ActiveState != "failed" {
			alive = true
		}
	}
	if !alive {
		return nil
	}
	cfg, err := bundle.Load(d.Dir)
	if err != nil {
		cfg = nil // its drain is then graceful-drain-micros; its deadline is kept anyway
	}
	v, _ := rebuild(d.App, d.liveRecord, cfg)
	m.holdPorts(v)
	m.draining[v] = d.Until
	m.log.Info("taking up a version that was draining", "app", v.app, "version", v.id, "until", d.Until.Format(time.RFC3339Nano))
	return v
}

// holdPorts keeps an adopted version's ports and fronts from being taken.
func (m *Manager) holdPorts(v *version) {
	for i, insts := range v.web {
		for _, in := range insts {
			m.ports.Hold(in.port)
			if in.sleep != nil && in.sleep.inner != 0 {
				m.ports.Hold(in.sleep.inner)
			}
		}
		for _, f := range append(v.frontsOf(i), v.canary[i]...) {
			m.ports.Hold(f)
		}
	}
}
