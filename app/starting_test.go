package app

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// gatedUnits holds every unit start until gate closes and counts the
// starts in flight.
type gatedUnits struct {
	*fakeUnits
	gate chan struct{}

	mu       sync.Mutex
	in, most int
}

func (g *gatedUnits) Start(ctx context.Context, u unitgen.Unit) error {
	g.mu.Lock()
	g.in++
	g.most = max(g.most, g.in)
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.in--
		g.mu.Unlock()
	}()
	select {
	case <-g.gate:
	case <-ctx.Done():
		return ctx.Err()
	}
	return g.fakeUnits.Start(ctx, u)
}

func (g *gatedUnits) counts() (in, most int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.in, g.most
}

// TestUnitStartsBounded: bundles dropped at once start their units a few
// at a time (systemd sets up each unit's sandbox under one kernel lock;
// 1000 at once made units fail their start timeout), and every one goes
// live once the starts go through.
func TestUnitStartsBounded(t *testing.T) {
	const bound, apps = 3, 9
	h := newHarness(t, nil)
	g := &gatedUnits{fakeUnits: h.units, gate: make(chan struct{})}
	h.stop()
	h.unitsAs, h.startsAtOnce = g, bound
	h.start()
	for i := range apps {
		h.drop(fmt.Sprintf("a%d.keter", i), fmt.Sprintf("a%d.test", i))
	}
	// Every bundle unpacked: each deploy is starting or waiting to.
	waitFor(t, func() bool { dirs, _ := os.ReadDir(h.cfg.Temp()); return len(dirs) == apps })
	waitFor(t, func() bool { in, _ := g.counts(); return in >= bound })
	time.Sleep(100 * time.Millisecond) // room for more starts, were they let through
	if _, most := g.counts(); most > bound {
		t.Fatalf("%d unit starts in flight at once, want at most %d", most, bound)
	}
	close(g.gate)
	for i := range apps {
		h.waitStatus(fmt.Sprintf("a%d", i), func(s AppStatus) bool { return s.Live != nil })
	}
	if _, most := g.counts(); most > bound {
		t.Fatalf("%d unit starts in flight at once, want at most %d", most, bound)
	}
}
