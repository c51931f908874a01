package usage

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Units is what the Tracker reads from systemd; the dbus package
// implements it.
type Units interface {
	// List returns every loaded unit whose name starts with prefix, with
	// the figures systemd counts for its current or last run.
	List(ctx context.Context, prefix string) ([]unitgen.Status, error)
	// RunID returns a unit's InvocationID and the start (µs) of the run
	// it belongs to.
	RunID(ctx context.Context, unit string) (invocation string, started uint64, err error)
	// Finals returns systemd's final records of runs after cursor (or,
	// with none, since since) and the cursor to pass next time.
	Finals(ctx context.Context, prefix, cursor string, since time.Time) ([]unitgen.Final, string, error)
}

// Defaults for how often the Tracker reads by itself and the journal.
const (
	DefaultInterval = 30 * time.Second
	finalsEvery     = time.Second
)

// Tracker keeps every app unit's runs and the totals per app and stanza.
// Its methods are safe for concurrent use.
type Tracker struct {
	units  Units
	prefix string
	log    *slog.Logger
	// Interval is how often Run reads every unit when nobody asks; it
	// bounds what a crash in hybrid cgroups (no final CPU record) loses.
	Interval time.Duration

	mu         sync.Mutex // guards what follows and serialises observing
	b          *books
	cursor     string
	lastFinals time.Time
	warned     bool
}

// New makes a Tracker of the units whose name starts with prefix.
func New(units Units, prefix string, log *slog.Logger) *Tracker {
	if log == nil {
		log = slog.Default()
	}
	return &Tracker{units: units, prefix: prefix, log: log, Interval: DefaultInterval, b: newBooks()}
}

// Run reads every unit at once (keter's totals start there) and then
// every Interval, until ctx ends.
func (t *Tracker) Run(ctx context.Context) error {
	for {
		if err := t.Refresh(ctx); err != nil && ctx.Err() == nil {
			t.log.Debug("reading app units' usage", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(t.Interval):
		}
	}
}

// Refresh lists the units and observes them.
func (t *Tracker) Refresh(ctx context.Context) error {
	at := time.Now()
	list, err := t.units.List(ctx, t.prefix)
	if err != nil {
		return err
	}
	t.Observe(ctx, list, at)
	return nil
}

// Observe updates the books from list, every unit whose name starts with
// the Tracker's prefix as read at listedAt, reads new final records, and
// returns the totals of every app and stanza it knows.
func (t *Tracker) Observe(ctx context.Context, list []unitgen.Status, listedAt time.Time) map[Key]Stanza {
	t.mu.Lock()
	defer t.mu.Unlock()
	invs := map[string]string{}
	for _, s := range list {
		if !t.b.needsRun(s) {
			continue
		}
		inv, started, err := t.units.RunID(ctx, s.Name)
		if err != nil {
			t.log.Debug("reading a unit's run", "unit", s.Name, "err", err)
			continue
		}
		if started == s.Usage.Started { // else it restarted since the list: next time
			invs[s.Name] = inv
		}
	}
	t.b.observe(list, invs, listedAt)
	now := time.Now()
	if now.Sub(t.lastFinals) >= finalsEvery {
		t.lastFinals = now
		t.readFinals(ctx, now)
	}
	t.b.evict(now)
	return t.b.totals()
}

// readFinals applies the final records logged since the last read.
func (t *Tracker) readFinals(ctx context.Context, now time.Time) {
	if t.b.seen.IsZero() {
		return
	}
	finals, cursor, err := t.units.Finals(ctx, t.prefix, t.cursor, t.b.since)
	if err != nil && ctx.Err() != nil {
		t.lastFinals = time.Time{} // the asker left; read again next time
		return
	}
	if err != nil {
		// Totals still never go down: a finished run keeps its last figures.
		level := slog.LevelDebug
		if !t.warned {
			level, t.warned = slog.LevelWarn, true
		}
		t.log.Log(ctx, level, "cannot read systemd's final usage records; a stopped run counts as last read", "err", err)
		return
	}
	t.cursor = cursor
	for _, f := range finals {
		t.b.final(f, now)
	}
}
