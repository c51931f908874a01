package nginx

import (
	"context"
	"time"
)

// Restarts counts the times keter saw nginx come back with a new main
// process it did not start itself.
func (m *Manager) Restarts() uint64 { return m.restarts.Load() }

// Watch follows nginx and the port map until ctx ends. nginx restarted
// (its master crashed or was killed, and systemd brought it back): the
// map is bound to the new cgroup, and keter checks that nginx serves its
// config. nginx down: logged, and a managed nginx that systemd gave up on
// is started again. The map changed outside keter (`nft flush ruleset`, a
// restart of nftables.service): put back.
func (m *Manager) Watch(ctx context.Context) {
	fast := time.NewTicker(250 * time.Millisecond)
	defer fast.Stop()
	last := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-fast.C:
		}
		m.checkNginx(ctx)
		if m.pm != nil && time.Since(last) >= time.Second {
			last = time.Now()
			m.checkMap(ctx)
		}
	}
}

// bind points the map's rule at nginx's cgroup as it is now.
func (m *Manager) bind(ctx context.Context) error {
	pid, err := m.units.MainPID(ctx, m.unit)
	if err != nil {
		return err
	}
	m.pid = pid
	if m.pm == nil || pid == 0 {
		return nil
	}
	return m.pm.BindProcess(ctx, int(pid))
}

func (m *Manager) checkNginx(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	pid, err := m.units.MainPID(ctx, m.unit)
	if err != nil || pid == m.pid {
		return
	}
	if pid == 0 {
		state, _ := m.units.ActiveState(ctx, m.unit)
		m.log.Error("nginx is down: no app is reachable until it is back", "unit", m.unit, "state", state, "old_pid", m.pid)
		m.pid = 0
		if m.managed() && state == "failed" {
			m.log.Info("starting nginx again (systemd gave up restarting it)", "unit", m.unit)
			if err := m.units.StartTransient(ctx, m.unit, m.unitProperties()); err != nil {
				m.log.Error("starting nginx again", "unit", m.unit, "err", err)
			}
		}
		return
	}
	m.restarts.Add(1)
	m.log.Warn("nginx restarted", "unit", m.unit, "old_pid", m.pid, "pid", pid)
	if err := m.bind(ctx); err != nil {
		m.log.Error("binding the port map to the restarted nginx", "err", err)
	}
	if m.gen == "" {
		return
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := m.waitLoaded(wctx, m.gen); err != nil {
		// It read an older file than the one keter last applied: apply
		// that again.
		m.log.Warn("the restarted nginx does not serve keter's config; reloading it", "err", err)
		if err := m.reload(ctx); err != nil {
			m.log.Error("reloading the restarted nginx", "err", err)
		}
	}
}

// checkMap puts the port map back when something else changed it. A
// missing element is put back only when it is still missing a second
// later: an app unit's stop hook takes its element out when the unit is
// stopped for good, and keter's next apply then drops it from mapped.
func (m *Manager) checkMap(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.mapped == nil {
		return // not applied yet
	}
	// The map is read back only when nftables changed since it was last
	// read back and found right: keter's own updates change the
	// generation too, and mapped changes only with one of them.
	var gen uint32
	known := false
	if g, ok := m.pm.(generations); ok {
		var err error
		gen, err = g.Generation()
		known = err == nil
		if known && m.cleanAt != nil && *m.cleanAt == gen {
			return
		}
	}
	m.cleanAt = nil
	cur, err := m.pm.Current(ctx)
	if err != nil {
		m.log.Warn("the nftables port map is gone (nft flush ruleset? nftables.service restarted?); restoring it", "err", err)
		m.restoreMap(ctx, true)
		return
	}
	restore := false
	missing := map[int]int{}
	for f, to := range m.mapped {
		got, ok := cur[f]
		switch {
		case !ok:
			missing[f] = to
			restore = restore || m.missing[f] == to
		case got != to:
			restore = true
		}
	}
	for f := range cur {
		if _, ok := m.mapped[f]; !ok {
			restore = true
		}
	}
	m.missing = missing
	if restore {
		m.log.Warn("the nftables port map was changed outside keter; restoring it", "read", cur)
		m.restoreMap(ctx, false)
		return
	}
	if known && len(missing) == 0 {
		m.cleanAt = &gen
	}
}

// generations is what a PortMap may also do: tell the kernel's nftables
// generation (the portmap package does).
type generations interface {
	Generation() (uint32, error)
}

func (m *Manager) restoreMap(ctx context.Context, whole bool) {
	if whole {
		if err := m.pm.Setup(ctx); err != nil {
			m.log.Error("restoring the nftables port map", "err", err)
			return
		}
		if err := m.bind(ctx); err != nil {
			m.log.Error("restoring the nftables port map", "err", err)
			return
		}
	}
	if err := m.pm.Apply(ctx, m.mapped); err != nil {
		m.log.Error("restoring the nftables port map", "err", err)
		return
	}
	m.missing = nil
	m.switches.Add(1)
}
