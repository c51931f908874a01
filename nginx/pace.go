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

// pace waits until MinReloadGap has passed since the last reload; m.mu
// is held.
func (m *Manager) pace(ctx context.Context) error {
	wait := time.Until(m.reloaded.Add(MinReloadGap))
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
