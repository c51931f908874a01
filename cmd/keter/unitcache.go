package main

import (
	"context"

	"github.com/keter-systemd/keter/dbus"
	"github.com/keter-systemd/keter/unitcache"
	"github.com/keter-systemd/keter/unitgen"
)

// cachedBus answers List from the unit cache and everything else from
// systemd: status, /metrics and the usage books then cost no call per
// unit (see docs/status.md for how stale the cache may be).
type cachedBus struct {
	*dbus.Client
	cache *unitcache.Cache
}

func (b cachedBus) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	return b.cache.List(ctx, prefix)
}
