package usage

import (
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Key is what totals are kept for: one stanza of one app, across its
// versions, restarts and instances.
type Key struct{ App, Stanza string }

// Retention of what no longer runs: a closed run waits this long for a
// late journal record, a key with no units this long before it is dropped.
const (
	closedFor = 10 * time.Minute
	idleFor   = time.Hour
)

// books is the Tracker's pure bookkeeping; it does no I/O.
type books struct {
	since  time.Time // the first observation: totals count from here
	seen   time.Time // when the last list applied was read
	units  map[string]*unitBook
	keys   map[Key]*keyBook
	closed map[string]*closedRun // by InvocationID
}

type unitBook struct {
	key    Key
	status unitgen.Status // as last listed
	run    *run           // nil until a run's InvocationID is known
}

// run is one start of a unit. Its contribution to the totals is last -
// base: base holds the counters at first sight of a run that was already
// going when keter started, so totals start at zero.
type run struct {
	inv        string
	started    uint64
	base, last unitgen.Figures
}

type keyBook struct {
	since time.Time
	acc   unitgen.Figures // contributions of runs that are no longer current
	used  time.Time       // last time a unit or record of the key was seen
}

// closedRun is a run that is no longer current, kept so that its final
// record can still raise what it counted.
type closedRun struct {
	key           Key
	base, counted unitgen.Figures
	at            time.Time
}

func newBooks() *books {
	return &books{units: map[string]*unitBook{}, keys: map[Key]*keyBook{}, closed: map[string]*closedRun{}}
}

// counters are the figures that only grow during a run.
var counters = func() []unitgen.Figure {
	var fs []unitgen.Figure
	for f := range unitgen.NumFigures {
		if f.Counter() {
			fs = append(fs, f)
		}
	}
	return fs
}()

func add(a, b uint64) uint64 {
	switch {
	case b == unitgen.Unset:
		return a
	case a == unitgen.Unset:
		return b
	}
	return a + b
}

// less is a - b, never below zero; Unset when a is.
func less(a, b uint64) uint64 {
	switch {
	case a == unitgen.Unset:
		return a
	case b == unitgen.Unset:
		return a
	case a < b:
		return 0
	}
	return a - b
}

func raise(a, b uint64) uint64 {
	if a == unitgen.Unset || (b != unitgen.Unset && b > a) {
		return b
	}
	return a
}

func (r *run) contribution() unitgen.Figures {
	c := unitgen.NoFigures()
	for _, f := range counters {
		c[f] = less(r.last[f], r.base[f])
	}
	return c
}

func (r *run) raise(figs unitgen.Figures) {
	for _, f := range counters {
		r.last[f] = raise(r.last[f], figs[f])
	}
}

func (b *books) key(k Key, since time.Time) *keyBook {
	kb := b.keys[k]
	if kb == nil {
		kb = &keyBook{since: since, acc: unitgen.NoFigures()}
		if kb.since.Before(b.since) {
			kb.since = b.since
		}
		b.keys[k] = kb
	}
	return kb
}

// needsRun reports whether s shows a run the books have no InvocationID
// for.
func (b *books) needsRun(s unitgen.Status) bool {
	if s.Usage.Started == 0 {
		return false
	}
	ub := b.units[s.Name]
	return ub == nil || ub.run == nil || s.Usage.Started > ub.run.started
}

// observe applies a list of every app unit read at listedAt; invs holds
// the InvocationIDs of the runs needsRun asked for (a missing one leaves
// the unit's new run for the next list). A list older than one already
// applied is ignored: it could only show runs that have ended as current.
func (b *books) observe(list []unitgen.Status, invs map[string]string, listedAt time.Time) {
	if listedAt.Before(b.seen) {
		return
	}
	first := b.seen.IsZero()
	if first {
		b.since = listedAt
	}
	b.seen = listedAt
	listed := make(map[string]bool, len(list))
	for _, s := range list {
		listed[s.Name] = true
		k := Key{s.Meta.App, s.Meta.Stanza}
		ub := b.units[s.Name]
		if ub == nil {
			ub = &unitBook{key: k}
			b.units[s.Name] = ub
		}
		ub.status = s
		if s.Usage.Started == 0 {
			continue // never ran: nothing to count
		}
		b.key(k, s.Usage.StartedAt()).used = listedAt
		switch {
		case ub.run != nil && s.Usage.Started == ub.run.started:
			ub.run.raise(s.Usage.Figures)
		case ub.run != nil && s.Usage.Started < ub.run.started:
			// An older run than the one known: the list is stale for this unit.
		case invs[s.Name] != "":
			b.close(ub, listedAt)
			ub.run = b.open(invs[s.Name], s.Usage, ub.key)
		}
	}
	for name, ub := range b.units {
		if !listed[name] {
			b.close(ub, listedAt)
			delete(b.units, name)
		}
	}
}

// open starts the books of a run, or takes back one that was closed (its
// final record came before the list showed it).
func (b *books) open(inv string, u unitgen.Usage, k Key) *run {
	r := &run{inv: inv, started: u.Started, base: unitgen.NoFigures(), last: unitgen.NoFigures()}
	if c := b.closed[inv]; c != nil {
		delete(b.closed, inv)
		kb := b.key(c.key, b.since)
		for _, f := range counters {
			kb.acc[f] = less(kb.acc[f], c.counted[f])
			r.last[f] = add(c.base[f], c.counted[f])
		}
		r.base = c.base
	} else if u.StartedAt().Before(b.since) {
		// Running since before keter started: count only from now.
		for _, f := range counters {
			r.base[f] = u.Figures[f]
		}
	}
	r.raise(u.Figures)
	return r
}

// close moves a unit's current run into its key's totals.
func (b *books) close(ub *unitBook, now time.Time) {
	if ub.run == nil {
		return
	}
	c := ub.run.contribution()
	kb := b.key(ub.key, b.since)
	for _, f := range counters {
		kb.acc[f] = add(kb.acc[f], c[f])
	}
	b.closed[ub.run.inv] = &closedRun{key: ub.key, base: ub.run.base, counted: c, at: now}
	ub.run = nil
}

// final applies systemd's account of a finished run. Figures it lacks
// (systemd could not count them) stay as last read.
func (b *books) final(f unitgen.Final, now time.Time) {
	if b.seen.IsZero() || f.At.Before(b.since) {
		return // before keter's totals began
	}
	if ub := b.units[f.Unit]; ub != nil && ub.run != nil && ub.run.inv == f.Invocation {
		ub.run.raise(f.Figures)
		b.key(ub.key, b.since).used = now
		return
	}
	if c := b.closed[f.Invocation]; c != nil {
		kb := b.key(c.key, b.since)
		for _, fig := range counters {
			got := less(f.Figures[fig], c.base[fig])
			if got != unitgen.Unset && (c.counted[fig] == unitgen.Unset || got > c.counted[fig]) {
				kb.acc[fig] = add(kb.acc[fig], less(got, c.counted[fig]))
				c.counted[fig] = got
			}
		}
		kb.used = now
		return
	}
	// A run that started and ended between two lists.
	m, ok := unitgen.ParseUnitName(f.Unit)
	if !ok {
		return
	}
	k := Key{m.App, m.Stanza}
	kb := b.key(k, f.At)
	kb.used = now
	c := &closedRun{key: k, base: unitgen.NoFigures(), counted: unitgen.NoFigures(), at: now}
	for _, fig := range counters {
		if f.Figures[fig] != unitgen.Unset {
			c.base[fig], c.counted[fig] = 0, f.Figures[fig]
			kb.acc[fig] = add(kb.acc[fig], f.Figures[fig])
		}
	}
	b.closed[f.Invocation] = c
}

// evict forgets closed runs and idle keys past their retention.
func (b *books) evict(now time.Time) {
	for inv, c := range b.closed {
		if now.Sub(c.at) > closedFor {
			delete(b.closed, inv)
		}
	}
	busy := map[Key]bool{}
	for _, ub := range b.units {
		busy[ub.key] = true
	}
	for k, kb := range b.keys {
		if !busy[k] && now.Sub(kb.used) > idleFor {
			delete(b.keys, k)
		}
	}
}

// totals are every key's figures: memory and tasks now, summed over its
// units; the counters since the key's since.
func (b *books) totals() map[Key]Stanza {
	figs := make(map[Key]unitgen.Figures, len(b.keys))
	for k, kb := range b.keys {
		figs[k] = kb.acc
	}
	for _, ub := range b.units {
		t, ok := figs[ub.key]
		if !ok {
			continue
		}
		for _, f := range []unitgen.Figure{unitgen.Memory, unitgen.Tasks} {
			t[f] = add(t[f], ub.status.Usage.Figures[f])
		}
		if ub.run != nil {
			c := ub.run.contribution()
			for _, f := range counters {
				t[f] = add(t[f], c[f])
			}
		}
		figs[ub.key] = t
	}
	out := make(map[Key]Stanza, len(b.keys))
	for k, kb := range b.keys {
		out[k] = Stanza{Stanza: k.Stanza, Since: kb.since, Figures: FiguresOf(figs[k])}
	}
	return out
}
