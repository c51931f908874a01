package nginx

import (
	"context"
	"time"
)

// MinReloadGap is the least time between two reloads. nginx starts a new
// set of workers at each reload and the old ones linger with their
// connections: when many apps come up at once (a thousand bundles, a host
// that booted), a reload waits until a second after the last one, and
// the next covers every app that became ready meanwhile (the core
// coalesces its updates while one is being applied). A single new app
// after a quiet second is not held up; a version switched by the port
// map never reloads.
const MinReloadGap = time.Second

// reloadParses is what a reload costs in parses of the config: the
// test's before it, and nginx's master's.
const reloadParses = 2

// reloadCoreShare: reloads take at most 1/reloadCoreShare of one core. A
// parse grows with the apps: at 1000 apps one `nginx -t` took 0.48 s of
// CPU, and while 400 apps came up nginx (reloads and tests) took 21.8 %
// of a 2-core host's CPU (perf).
const reloadCoreShare = 3

// reloadGap is the time to wait after a reload whose config took
// parseCPU to test: MinReloadGap, or longer once parsing is costly.
func reloadGap(parseCPU time.Duration) time.Duration {
	return max(MinReloadGap, reloadCoreShare*reloadParses*parseCPU)
}

// pace waits until reloadGap has passed since the last reload; m.mu
// is held.
func (m *Manager) pace(ctx context.Context) error {
	wait := time.Until(m.reloaded.Add(reloadGap(m.parseCPU)))
	if wait <= 0 {
		return nil
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
