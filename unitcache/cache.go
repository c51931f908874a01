package unitcache

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Source is what the cache reads systemd through; the dbus package's
// Client implements it.
type Source interface {
	// List reads every loaded unit whose name starts with prefix, with its
	// figures: one call per unit, so the cache calls it rarely.
	List(ctx context.Context, prefix string) ([]unitgen.Status, error)
	// SubscribeStates sends each matching unit's state, first as it is,
	// then at every change as systemd's signals tell it, without reading
	// the unit back; ActiveState "gone" once systemd unloaded it.
	SubscribeStates(ctx context.Context, prefix string) (<-chan unitgen.Status, error)
}

// Defaults for how often the cache reads by itself.
const (
	// DefaultInterval matches the usage books' own interval (usage
	// package): between requests, nothing else reads the figures, and at
	// 1000 units a read of every cgroup every 5 s was 5 s of keter's CPU
	// in a 1000-bundle bring-up, as much as its state writes.
	DefaultInterval  = 30 * time.Second
	DefaultFullEvery = 2 * time.Minute
	// DefaultFresh bounds how old figures are when someone asks: requests
	// within a second share one read.
	DefaultFresh = time.Second
	// settle is how long a changed unit waits before it is read in full:
	// one read then covers the burst of signals a start or stop sends.
	settle = 300 * time.Millisecond
)

// Cache holds every unit whose name starts with its prefix. Its methods
// are safe for concurrent use.
type Cache struct {
	src    Source
	prefix string
	log    *slog.Logger
	// Interval is how often usage figures are read from cgroup files.
	Interval time.Duration
	// FullEvery is how often the whole list is read from systemd.
	FullEvery time.Duration
	// Cgroups reads a unit's figures from its cgroup; nil reads the
	// cgroup v2 files under keter.slice (see ReadCgroup).
	Cgroups func(unit string) (unitgen.Figures, bool)
	// Fresh is how old the cgroup figures may be when List is called:
	// older ones are read again first (file reads, no call to systemd).
	Fresh time.Duration
	// BeforeRead, when set, is called before changed units are read
	// again: the cache still holds the last figures of the runs that
	// ended (read from their cgroups as they ended), which a running
	// total must take before they are replaced by the new runs'.
	BeforeRead func(ctx context.Context)

	loaded   chan struct{} // closed after the first full read
	loadOnce sync.Once
	bypass   atomic.Bool // no subscription: List reads systemd

	mu    sync.Mutex
	units map[string]unitgen.Status
	dirty map[string]bool // changed since their last full read
	// base is, per unit, what its cgroup's counters held beyond systemd's
	// at the last full read: systemd counts each run from its start, a
	// cgroup kept across an automatic restart counts on.
	base map[string]unitgen.Figures
	// cgroupsAt is when readCgroups last started.
	cgroupsAt time.Time
	wake      chan struct{}
}

// New makes a Cache of the units whose name starts with prefix; Run fills it.
func New(src Source, prefix string, log *slog.Logger) *Cache {
	if log == nil {
		log = slog.Default()
	}
	return &Cache{
		src: src, prefix: prefix, log: log, Interval: DefaultInterval, FullEvery: DefaultFullEvery, Fresh: DefaultFresh,
		loaded: make(chan struct{}), units: map[string]unitgen.Status{}, dirty: map[string]bool{},
		base: map[string]unitgen.Figures{}, wake: make(chan struct{}, 1),
	}
}

// List returns the cached units whose name starts with prefix, sorted by
// name. Before the first full read it waits for it; a prefix outside the
// cache's is read from the Source.
func (c *Cache) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	if !strings.HasPrefix(prefix, c.prefix) || c.bypass.Load() {
		return c.src.List(ctx, prefix)
	}
	select {
	case <-c.loaded:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	stale := c.Fresh > 0 && time.Since(c.cgroupsAt) > c.Fresh
	c.mu.Unlock()
	if stale {
		c.readCgroups()
	}
	return c.snapshot(prefix), nil
}

// Cached is List without reading any cgroup first: the figures as the
// cache holds them, at most Interval old; false before the first full
// read. For BeforeRead, which comes before every batch of changed
// units: a List there read every unit's cgroup each second while units
// changed (1000 bundles dropped at once: 2.4 s of keter's CPU).
func (c *Cache) Cached(prefix string) ([]unitgen.Status, bool) {
	select {
	case <-c.loaded:
	default:
		return nil, false
	}
	if !strings.HasPrefix(prefix, c.prefix) || c.bypass.Load() {
		return nil, false
	}
	return c.snapshot(prefix), true
}

func (c *Cache) snapshot(prefix string) []unitgen.Status {
	c.mu.Lock()
	out := make([]unitgen.Status, 0, len(c.units))
	for name, s := range c.units {
		if strings.HasPrefix(name, prefix) {
			out = append(out, s)
		}
	}
	c.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Run subscribes, reads every unit, then keeps the cache current until
// ctx ends. When it cannot subscribe, List reads systemd instead.
func (c *Cache) Run(ctx context.Context) error {
	events, err := c.src.SubscribeStates(ctx, c.prefix)
	if err != nil {
		c.bypass.Store(true)
		c.loadOnce.Do(func() { close(c.loaded) })
		return fmt.Errorf("following app units, so status reads systemd at each request: %w", err)
	}
	go c.follow(ctx, events)
	c.full(ctx)
	fast := time.NewTicker(c.Interval)
	defer fast.Stop()
	slow := time.NewTicker(c.FullEvery)
	defer slow.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-slow.C:
			c.full(ctx)
		case <-fast.C:
			c.mu.Lock()
			recent := time.Since(c.cgroupsAt) < c.Interval/2
			c.mu.Unlock()
			if !recent { // a request's read counts
				c.readCgroups()
			}
		case <-c.wake:
			if sleepCtx(ctx, settle) != nil {
				return nil
			}
			c.readDirty(ctx)
		}
	}
}

// follow applies the Source's state changes as they come.
func (c *Cache) follow(ctx context.Context, events <-chan unitgen.Status) {
	for s := range events {
		c.apply(s)
	}
}

// apply merges one state change. Figures stay those of the last read: a
// change may start a new run, whose start time and figures the read of
// the unit that follows brings together. Before the first full read a
// change is only noted (that read covers it); one that changes nothing
// the cache holds (the subscription's own first listing) is dropped.
func (c *Cache) apply(s unitgen.Status) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s.ActiveState == "gone" {
		delete(c.units, s.Name)
		delete(c.dirty, s.Name)
		delete(c.base, s.Name)
		return
	}
	old, seen := c.units[s.Name]
	if seen {
		if s.ActiveState == old.ActiveState && s.SubState == old.SubState &&
			(s.MainPID == 0 || s.MainPID == old.MainPID) && s.NRestarts <= old.NRestarts && (s.Result == "" || s.Result == old.Result) {
			return
		}
		// A signal says only what changed; the rest is the last read's.
		s.Usage, s.ExecMainCode, s.ExecMainStatus = old.Usage, old.ExecMainCode, old.ExecMainStatus
		if old.ActiveState == "active" && s.ActiveState != "active" && old.Usage.Started != 0 {
			// The run ends: its last figures, while its cgroup is there.
			c.fromCgroup(&s)
		}
		s.Meta = old.Meta
		if s.Result == "" {
			s.Result = old.Result
		}
		if s.NRestarts < old.NRestarts {
			s.NRestarts = old.NRestarts
		}
	}
	c.units[s.Name] = s
	select {
	case <-c.loaded:
	default:
		return
	}
	c.dirty[s.Name] = true
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// full reads every unit from systemd and replaces the cache with it.
func (c *Cache) full(ctx context.Context) {
	list, err := c.src.List(ctx, c.prefix)
	if err != nil {
		if ctx.Err() == nil {
			c.log.Warn("reading app units", "err", err)
		}
		return
	}
	bases := make([]*unitgen.Figures, len(list))
	for i, s := range list {
		bases[i] = c.baseOf(s)
	}
	c.mu.Lock()
	units := make(map[string]unitgen.Status, len(list))
	for n := range c.dirty { // changed while we read: keep the signal's state
		if s, ok := c.units[n]; ok {
			units[n] = s
		}
	}
	c.units = units
	clear(c.base)
	for i, s := range list {
		c.keep(s, bases[i])
	}
	c.mu.Unlock()
	c.loadOnce.Do(func() { close(c.loaded) })
}

// readDirty reads each changed unit from systemd again.
func (c *Cache) readDirty(ctx context.Context) {
	if c.BeforeRead != nil {
		c.BeforeRead(ctx)
	}
	c.mu.Lock()
	names := make([]string, 0, len(c.dirty))
	for n := range c.dirty {
		// A unit starting is read once it is up or has failed (its next
		// signal makes it dirty again): a read is systemd's whole Service
		// interface, and a start passes through a state for each
		// ExecStartPre and the start itself. A crashed unit waiting to
		// restart (auto-restart) is read: its run ended.
		if !starting(c.units[n]) {
			names = append(names, n)
		}
	}
	clear(c.dirty)
	c.mu.Unlock()
	for _, n := range names {
		s, found, err := c.readOne(ctx, n)
		if err != nil {
			c.log.Debug("reading a changed unit", "unit", n, "err", err)
			continue
		}
		if found {
			c.store(s)
		}
		c.mu.Lock()
		if _, known := c.units[n]; !found && known && !c.dirty[n] {
			delete(c.units, n) // collected before we read it
		}
		c.mu.Unlock()
	}
}

func starting(s unitgen.Status) bool {
	switch s.SubState {
	case "condition", "start-pre", "start", "start-post":
		return s.ActiveState == "activating"
	}
	return false
}

// statusReader is what a Source may also do: read one unit by name, where
// List's pattern makes systemd match every unit it has (the dbus package
// does).
type statusReader interface {
	Status(ctx context.Context, name string) (unitgen.Status, bool, error)
}

// readOne reads one unit as List would; found is false once it is gone.
func (c *Cache) readOne(ctx context.Context, name string) (unitgen.Status, bool, error) {
	if r, ok := c.src.(statusReader); ok {
		return r.Status(ctx, name)
	}
	list, err := c.src.List(ctx, listPrefix(name))
	if err != nil {
		return unitgen.Status{}, false, err
	}
	for _, s := range list {
		if s.Name == name {
			return s, true, nil
		}
	}
	return unitgen.Status{}, false, nil
}

// listPrefix is the longest prefix of a unit's name that lists it: systemd
// matches List's pattern without backslash escapes, so a name holding a
// backslash (unit names escape "-" in a stanza's name as \x2d) or a glob
// character is listed by what comes before it.
func listPrefix(name string) string {
	if i := strings.IndexAny(name, `\*?[]`); i >= 0 {
		return name[:i]
	}
	return name
}

// store keeps a unit as systemd reported it in full.
func (c *Cache) store(s unitgen.Status) {
	b := c.baseOf(s)
	c.mu.Lock()
	c.keep(s, b)
	c.mu.Unlock()
}

// keep stores s unless a signal changed the unit since it was read (it is
// read again then); c.mu is held.
func (c *Cache) keep(s unitgen.Status, base *unitgen.Figures) {
	if c.dirty[s.Name] {
		return
	}
	c.units[s.Name] = s
	delete(c.base, s.Name)
	if base != nil {
		c.base[s.Name] = *base
	}
}

// baseOf is how far the unit's cgroup counters run ahead of systemd's
// figures in s; nil when its cgroup cannot be read.
func (c *Cache) baseOf(s unitgen.Status) *unitgen.Figures {
	if s.ActiveState != "active" || s.Usage.Started == 0 {
		return nil
	}
	raw, ok := c.cgroups()(s.Name)
	if !ok {
		return nil
	}
	var b unitgen.Figures
	for f := range b {
		if unitgen.Figure(f).Counter() && raw[f] != unitgen.Unset && s.Usage.Figures[f] != unitgen.Unset && raw[f] > s.Usage.Figures[f] {
			b[f] = raw[f] - s.Usage.Figures[f]
		}
	}
	return &b
}

func (c *Cache) cgroups() func(string) (unitgen.Figures, bool) {
	if c.Cgroups != nil {
		return c.Cgroups
	}
	return ReadCgroup
}

// fromCgroup updates s's figures from its cgroup; c.mu is held.
func (c *Cache) fromCgroup(s *unitgen.Status) {
	figs, ok := c.cgroups()(s.Name)
	if !ok {
		return
	}
	b := c.base[s.Name]
	for f, v := range figs {
		if v != unitgen.Unset {
			s.Usage.Figures[f] = v - min(v, b[f])
		}
	}
}

// readCgroups refreshes the running units' figures from their cgroups.
func (c *Cache) readCgroups() {
	read := c.cgroups()
	c.mu.Lock()
	c.cgroupsAt = time.Now()
	names := make([]string, 0, len(c.units))
	for n, s := range c.units {
		if s.Usage.Started != 0 && s.ActiveState == "active" && !c.dirty[n] && strings.HasSuffix(n, ".service") {
			names = append(names, n)
		}
	}
	c.mu.Unlock()
	for _, n := range names {
		figs, ok := read(n)
		if !ok {
			continue
		}
		c.mu.Lock()
		if s, known := c.units[n]; known && !c.dirty[n] {
			b := c.base[n]
			for f, v := range figs {
				if v != unitgen.Unset {
					s.Usage.Figures[f] = v - min(v, b[f])
				}
			}
			c.units[n] = s
		}
		c.mu.Unlock()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
