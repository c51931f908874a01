package app

import (
	"context"
	"fmt"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// Sleeping apps (idle-stop, see unitgen.Sleep and docs/idle.md). Each
// instance of a webapp stanza with idle-stop has a socket unit holding its
// port, so its front stays in the port map while it sleeps. A proxied
// app is put to sleep by systemd itself (the proxy exits when idle, the
// app stops with it); an app that takes the socket (socket-activation) is
// put to sleep by keter, which counts its connections with the kernel's
// sock_diag (as drains do) and stops its service after idle-stop with
// none.

// sleeper is what makes an instance sleep when idle.
type sleeper struct {
	socket string
	proxy  string // empty with socket-activation
	inner  int    // the app's own port behind the proxy
	idle   time.Duration
}

// sleepRecord is a sleeper in the state file, by its app unit.
type sleepRecord struct {
	Socket string        `json:"socket"`
	Proxy  string        `json:"proxy,omitempty"`
	Inner  int           `json:"inner,omitempty"`
	Idle   time.Duration `json:"idle_ns"`
}

// idlePoll is how often keter counts a socket-activated app's connections.
const idlePoll = 250 * time.Millisecond

// planSleep makes in a sleeper when its stanza sleeps: socket names, and a
// private port for the app behind its proxy.
func (m *Manager) planSleep(in *instance, meta unitgen.Meta, w *bundle.WebApp) error {
	idle := w.Sleeps(time.Duration(m.cfg.IdleStop))
	if idle <= 0 {
		return nil
	}
	socket, proxy, err := unitgen.SleeperNames(meta, w.SocketActivation)
	if err != nil {
		return err
	}
	in.sleep = &sleeper{socket: socket, proxy: proxy, idle: idle}
	if proxy != "" {
		if in.sleep.inner, err = m.ports.Take(); err != nil {
			return err
		}
	}
	return nil
}

// startSleepers starts the sockets of v's sleeping instances, the app and
// proxy units with them; the first connection (the readiness probe)
// starts the app.
func (r *rollout) startSleepers(ctx context.Context, pluginEnv map[string]string) error {
	m, v := r.m, r.v
	operator, err := m.OperatorEnv(v.app)
	if err != nil {
		return err
	}
	for i, s := range v.cfg.Stanzas {
		insts := v.web[i]
		for k, inst := range insts {
			if inst.sleep == nil {
				continue
			}
			in := m.unitInput(v, i, s, pluginEnv, operator)
			in.Port = inst.port
			if len(insts) > 1 {
				in.Instance = k + 1
			}
			if m.hook != nil {
				in.StopHook = m.hook(inst.front, inst.port, inst.sleep.socket)
			}
			sl, err := unitgen.Sleep(in, inst.sleep.idle, inst.sleep.inner)
			if err != nil {
				return fmt.Errorf("stanzas[%d]: %w", i, err)
			}
			if err := v.writeUnitFiles(sl.App); err != nil {
				return err
			}
			v.units = append(v.units, sl.App.Name)
			if err := m.units.StartSleeper(ctx, sl); err != nil {
				return fmt.Errorf("starting %s: %w", sl.Socket, err)
			}
			m.log.Info("socket started", "app", v.app, "version", v.id, "unit", sl.Socket, "port", inst.port, "idle_stop", inst.sleep.idle.String())
		}
	}
	return nil
}

// sleeperUnits are v's sockets, then its proxies: what stopUnits stops
// before the apps, so that nothing wakes an app being stopped.
func (v *version) sleeperUnits() []string {
	var socks, proxies []string
	for _, insts := range v.web {
		for _, in := range insts {
			if in.sleep != nil {
				socks = append(socks, in.sleep.socket)
				if in.sleep.proxy != "" {
					proxies = append(proxies, in.sleep.proxy)
				}
			}
		}
	}
	return append(socks, proxies...)
}

// stopSleepers stops v's sockets and proxies.
func (m *Manager) stopSleepers(ctx context.Context, v *version) {
	for _, u := range v.sleeperUnits() {
		if err := m.units.Stop(ctx, u); err != nil {
			m.log.Error("stopping unit", "app", v.app, "version", v.id, "unit", u, "err", err)
		}
	}
}

// sleepRecords are v's sleepers for the state file.
func (v *version) sleepRecords() map[string]sleepRecord {
	out := map[string]sleepRecord{}
	for _, insts := range v.web {
		for _, in := range insts {
			if s := in.sleep; s != nil {
				out[in.unit] = sleepRecord{Socket: s.socket, Proxy: s.proxy, Inner: s.inner, Idle: s.idle}
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// sleeperOf is the sleeper a record names for unit; nil when it has none.
func sleeperOf(rec liveRecord, unit string) *sleeper {
	r, ok := rec.Sleepers[unit]
	if !ok {
		return nil
	}
	return &sleeper{socket: r.Socket, proxy: r.Proxy, inner: r.Inner, idle: r.Idle}
}

// asleep reports whether unit is a sleeper whose socket still listens and
// whose app has not failed: a sleeping (or waking) app, to adopt as it is.
func asleep(rec liveRecord, unit string, running map[string]unitgen.Status) bool {
	s := sleeperOf(rec, unit)
	if s == nil {
		return false
	}
	sock, ok := running[s.socket]
	if !ok || sock.ActiveState != "active" {
		return false
	}
	st, ok := running[unit]
	return ok && st.ActiveState != "failed"
}

// sleepListens is the readiness check's "the answer came from our unit"
// for a sleeper: a proxied app must listen on its own port; a socket the
// app took is systemd's, bound for this unit's socket, so nothing else
// can hold it.
func (m *Manager) sleepListens(ctx context.Context, unit string, s *sleeper) error {
	if s.inner == 0 {
		return nil
	}
	return m.units.Listens(ctx, unit, s.inner)
}

// watchIdle puts socket-activated apps to sleep: a service whose port had
// no connection for its idle-stop is stopped; its socket stays. Proxied
// apps need no watching: their proxy exits by itself.
func (m *Manager) watchIdle(ctx context.Context) {
	if m.servingEach == nil {
		return
	}
	lastBusy := map[string]time.Time{}
	t := time.NewTicker(idlePoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		type watched struct {
			in  *instance
			app string
		}
		var ws []watched
		var ports []int
		m.mu.Lock()
		for _, v := range m.live {
			for _, insts := range v.web {
				for _, in := range insts {
					if in.sleep != nil && in.sleep.proxy == "" && !in.down {
						ws = append(ws, watched{in, v.app})
						ports = append(ports, in.port)
					}
				}
			}
		}
		m.mu.Unlock()
		if len(ws) == 0 {
			clear(lastBusy)
			continue
		}
		counts, err := m.servingEach(ports)
		if err != nil {
			m.log.Debug("counting connections of sleeping apps", "err", err)
			continue
		}
		now := time.Now()
		seen := map[string]bool{}
		for _, w := range ws {
			seen[w.in.unit] = true
			last, ok := lastBusy[w.in.unit]
			if !ok || counts[w.in.port] > 0 {
				lastBusy[w.in.unit] = now
				continue
			}
			if now.Sub(last) < w.in.sleep.idle {
				continue
			}
			lastBusy[w.in.unit] = now
			st, found, err := m.unitHealth(ctx, w.in.unit)
			if err != nil || !found || st.ActiveState != "active" {
				continue
			}
			m.log.Info("app idle; stopping it until its next request", "app", w.app, "unit", w.in.unit, "idle_stop", w.in.sleep.idle.String())
			if err := m.units.Stop(ctx, w.in.unit); err != nil {
				m.log.Error("stopping an idle app", "unit", w.in.unit, "err", err)
			}
		}
		for u := range lastBusy {
			if !seen[u] {
				delete(lastBusy, u)
			}
		}
	}
}

// sockets maps each of v's sleeping units to its socket.
func (v *version) sockets() map[string]string {
	out := map[string]string{}
	for _, insts := range v.web {
		for _, in := range insts {
			if in.sleep != nil {
				out[in.unit] = in.sleep.socket
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
