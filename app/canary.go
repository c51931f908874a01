package app

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Canary releases. `keter canary APP --percent N` arms a canary: the next
// bundle for APP (dropped or `keter deploy`ed) starts beside the live
// version instead of replacing it, and N % of new clients go to it,
// sticky per client (the proxy's cookie split). A second bundle while a
// canary runs replaces the canary (the previous canary drains). Promote
// makes the canary the live version (the old one drains, as after a
// deploy); abort drops it (it drains) and puts the live version's bundle
// back in incoming/, so a rescan or restart does not deploy the aborted
// one. Nothing reloads nginx: every webapp stanza has canary fronts,
// rendered ahead as its canary group, which the port map points at the
// canary's instances while they run, else at the live ones.

// ErrNoCanary means the app has no canary to change, promote or abort.
var ErrNoCanary = errors.New("no canary")

// ErrCanaryRefused means a canary keter will not run: a bad share, an app
// it cannot split, a canary that is not serving.
var ErrCanaryRefused = errors.New("canary refused")

// canaryState is one app's canary.
type canaryState struct {
	percent int
	since   time.Time
	v       *version        // nil until a bundle arrives
	down    map[string]bool // canary webapp units not running now
	// stable are down units up again, each with the generation of the
	// timer that counts them up after canaryStable.
	stable map[string]uint64
	gen    uint64
	// requests counts what nginx logged per version since v started
	// (CountRequest).
	requests CanaryRequests
}

// CanaryRequests counts requests per version while a canary runs, since
// its version started or keter did, whichever is later.
type CanaryRequests struct {
	Live   uint64 `json:"live"`
	Canary uint64 `json:"canary"`
}

func (c *canaryState) ready() bool { return c.v != nil && len(c.down) == 0 }

// canaries is the Manager's part for canaries; apps is guarded by
// Manager.mu.
type canaries struct {
	op   sync.Mutex // one canary step at a time
	apps map[string]*canaryState
}

// canaryRecord is a canary in the state file.
type canaryRecord struct {
	Percent int         `json:"percent"`
	Since   time.Time   `json:"since"`
	Version *liveRecord `json:"version,omitempty"`
}

// CanaryStatus is an app's canary as keter status shows it.
type CanaryStatus struct {
	Percent int       `json:"percent"`
	Since   time.Time `json:"since"`
	// Version is the canary version; nil while keter waits for its bundle.
	Version *VersionStatus `json:"version,omitempty"`
	// Ready: every canary instance runs, so its share goes to it; else
	// its clients are served by the live version.
	Ready bool `json:"ready"`
	// Down names the canary units not running.
	Down []string `json:"down,omitempty"`
	// Requests are the requests each version answered.
	Requests CanaryRequests `json:"requests"`
}

// CanaryLive is the canary as the proxy needs it.
type CanaryLive struct {
	Version string
	Ports   map[int][]int
	Percent int
	Ready   bool
}

// SetCanary arms a canary for name with percent % of new clients, or
// changes the share of the canary it has. It returns once the proxy
// serves the share.
func (m *Manager) SetCanary(ctx context.Context, name string, percent int) error {
	if percent < 0 || percent > 100 {
		return fmt.Errorf("canary of %s: percent %d: want a whole number from 0 to 100: %w", name, percent, ErrCanaryRefused)
	}
	m.canary.op.Lock()
	defer m.canary.op.Unlock()
	m.mu.Lock()
	v := m.live[name]
	if v == nil {
		_, known := m.status[name]
		m.mu.Unlock()
		if !known {
			return fmt.Errorf("canary of %q: %w", name, ErrUnknownApp)
		}
		return fmt.Errorf("canary of %s: %w: deploy it first", name, ErrNotLive)
	}
	if err := canSplit(v); err != nil {
		m.mu.Unlock()
		return fmt.Errorf("canary of %s: %w", name, err)
	}
	if m.canary.apps == nil {
		m.canary.apps = map[string]*canaryState{}
	}
	c := m.canary.apps[name]
	if c == nil {
		c = &canaryState{since: time.Now()}
		m.canary.apps[name] = c
	}
	prev := c.percent
	c.percent = percent
	running := c.v != nil
	m.mu.Unlock()
	m.saveState()
	m.log.Info("canary share set", "app", name, "percent", percent, "was", prev, "running", running)
	if !running {
		return nil
	}
	if err := m.sync.Sync(ctx); err != nil {
		return fmt.Errorf("changing the canary share of %s: %w", name, err)
	}
	canarySettle(ctx)
	return nil
}

// canaryFlagDelay is how long nginx may act on the split's flag files as
// they were (its open file cache, nginx/canary.go): a step is served in
// full that long after the proxy applied it.
var canaryFlagDelay = time.Second

func canarySettle(ctx context.Context) {
	select {
	case <-time.After(canaryFlagDelay):
	case <-ctx.Done():
	}
}

// canSplit tells whether v's clients can be split: every webapp stanza
// has canary fronts (behind a port map, taken while ports were plenty).
func canSplit(v *version) error {
	if len(v.web) == 0 {
		return fmt.Errorf("%w: the live version has no webapp stanza", ErrCanaryRefused)
	}
	for i := range v.web {
		if len(v.canary[i]) == 0 {
			return fmt.Errorf("%w: webapp stanza %d has no canary fronts (keter switches by reloading nginx, or the port-manager ranges were too full when it was deployed: free ports and deploy it again)", ErrCanaryRefused, i)
		}
	}
	return nil
}

// canaryFits refuses a canary bundle whose stanzas the live version's
// front door cannot split: the canary must have the same stanzas, of the
// same types, with the same hosts (nginx serves the live config).
func canaryFits(live, v *version) error {
	if live == nil {
		return fmt.Errorf("%w: no version is live any more", ErrCanaryRefused)
	}
	a, b := live.cfg.Stanzas, v.cfg.Stanzas
	if len(a) != len(b) {
		return fmt.Errorf("%w: the bundle has %d stanzas, the live version %d: a canary must have the live version's stanzas and hosts (abort the canary and deploy it instead)", ErrCanaryRefused, len(b), len(a))
	}
	for i := range a {
		if a[i].Type != b[i].Type {
			return fmt.Errorf("%w: stanzas[%d] is %s, the live version's is %s: a canary must have the live version's stanzas and hosts", ErrCanaryRefused, i, b[i].Type, a[i].Type)
		}
		if ha, hb := a[i].Hosts(), b[i].Hosts(); !slices.Equal(ha, hb) {
			return fmt.Errorf("%w: stanzas[%d] has hosts %v, the live version %v: a canary must have the live version's hosts (abort the canary and deploy it instead)", ErrCanaryRefused, i, hb, ha)
		}
	}
	return nil
}

// canaryArmed reports whether name's next bundle becomes its canary.
func (m *Manager) canaryArmed(name string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.canary.apps[name] != nil
}

// canaryVersion is name's canary version, nil for none.
func (m *Manager) canaryVersion(name string) *version {
	m.mu.Lock()
	defer m.mu.Unlock()
	if c := m.canary.apps[name]; c != nil {
		return c.v
	}
	return nil
}

// isCanary reports whether v is its app's canary.
func (m *Manager) isCanary(v *version) bool { return v != nil && m.canaryVersion(v.app) == v }

// goCanary makes the rollout's version the app's canary: recorded, then
// the proxy's canary fronts pointed at it and its share flagged; a
// canary it replaces drains.
func (m *Manager) goCanary(ctx context.Context, r *rollout) error {
	v := r.v
	m.canary.op.Lock()
	defer m.canary.op.Unlock()
	m.mu.Lock()
	c := m.canary.apps[v.app]
	if c == nil {
		m.mu.Unlock()
		return fmt.Errorf("the canary of %s was aborted while its bundle was deployed: %w", v.app, ErrNoCanary)
	}
	if err := canaryFits(m.live[v.app], v); err != nil {
		m.mu.Unlock()
		return err
	}
	prev := c.v
	v.deployedAt = time.Now()
	c.v, c.down, c.stable, c.requests = v, nil, nil, CanaryRequests{}
	delete(m.pending, v.app)
	m.mu.Unlock()
	m.saveState()
	if err := m.sync.Sync(ctx); err != nil {
		m.mu.Lock()
		c.v = prev
		m.mu.Unlock()
		m.saveState()
		if ctx.Err() == nil {
			if rerr := m.sync.Sync(ctx); rerr != nil {
				m.log.Error("restoring nginx after a failed canary switch", "app", v.app, "err", rerr)
			}
		}
		return fmt.Errorf("switching nginx to the canary: %w", err)
	}
	canarySettle(ctx)
	r.steps.mark("switch")
	if prev != nil {
		m.log.Info("canary replaced", "app", v.app, "version", v.id, "replaces", prev.id)
		m.retire(ctx, prev)
	}
	return nil
}

// PromoteCanary makes name's canary its live version; the version it
// replaces drains as after a deploy. It returns once nginx serves it.
func (m *Manager) PromoteCanary(ctx context.Context, name string) error {
	// A deploy running now decided from the canary as it was (canary or
	// live, the same bundle or not): promote between its steps and it
	// would replace what was promoted. Wait for it, and promote only the
	// canary the operator asked for.
	asked := m.canaryVersion(name)
	release, err := m.holdApp(ctx, name)
	if err != nil {
		return fmt.Errorf("promoting the canary of %s: %w", name, err)
	}
	defer release()
	m.canary.op.Lock()
	defer m.canary.op.Unlock()
	m.mu.Lock()
	c := m.canary.apps[name]
	switch {
	case asked != nil && (c == nil || c.v != asked):
		m.mu.Unlock()
		return fmt.Errorf("promoting the canary of %s: %w: version %s was replaced or dropped by a deploy that ended as you asked (see keter status, then promote again)", name, ErrCanaryRefused, asked.id)
	case c == nil:
		m.mu.Unlock()
		return fmt.Errorf("promoting the canary of %s: %w", name, ErrNoCanary)
	case c.v == nil:
		m.mu.Unlock()
		return fmt.Errorf("promoting the canary of %s: %w: keter waits for its bundle (deploy one, or abort)", name, ErrNoCanary)
	case !c.ready():
		m.mu.Unlock()
		return fmt.Errorf("promoting the canary of %s: %w: it is not serving (%v not running); fix it or abort", name, ErrCanaryRefused, slices.Sorted(maps.Keys(c.down)))
	}
	v := c.v
	delete(m.canary.apps, name)
	v.deployedAt = time.Now()
	m.mu.Unlock()
	old := m.swapLive(name, v)
	m.saveState()
	if err := m.sync.Sync(ctx); err != nil {
		m.swapLive(name, old)
		m.mu.Lock()
		m.canary.apps[name] = c
		m.mu.Unlock()
		m.saveState()
		if ctx.Err() == nil {
			if rerr := m.sync.Sync(ctx); rerr != nil {
				m.log.Error("restoring nginx after a failed promote", "app", name, "err", rerr)
			}
		}
		return fmt.Errorf("promoting the canary of %s: %w", name, err)
	}
	canarySettle(ctx)
	m.log.Info("canary promoted: version live", "app", name, "version", v.id, "replaces", versionID(old))
	m.keepBundle(v)
	m.mu.Lock()
	s := m.entry(name)
	s.LastResult, s.LastError, s.LastDigest, s.LastAt = ResultLive, "", v.digest, time.Now()
	m.mu.Unlock()
	bg := m.detached(ctx)
	if old != nil {
		m.retire(bg, old)
	}
	m.startJobs(bg, v)
	return nil
}

// detached is ctx without its end (a CLI request's), ended instead when
// the manager stops: for what outlives the request, as a drain.
func (m *Manager) detached(ctx context.Context) context.Context {
	c, cancel := context.WithCancel(context.WithoutCancel(ctx))
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		<-m.sync.stopped
		cancel()
	}()
	return c
}

// AbortCanary drops name's canary: its clients go back to the live
// version, it drains, and the live version's bundle goes back to
// incoming/ (a rescan must not deploy the aborted bundle).
func (m *Manager) AbortCanary(ctx context.Context, name string) error {
	// A deploy running now may have decided before the abort that its
	// bundle is no canary, and would make the aborted bundle live.
	release, err := m.holdApp(ctx, name)
	if err != nil {
		return fmt.Errorf("aborting the canary of %s: %w", name, err)
	}
	defer release()
	m.canary.op.Lock()
	defer m.canary.op.Unlock()
	m.mu.Lock()
	c := m.canary.apps[name]
	if c == nil {
		m.mu.Unlock()
		return fmt.Errorf("aborting the canary of %s: %w", name, ErrNoCanary)
	}
	delete(m.canary.apps, name)
	live := m.live[name]
	m.mu.Unlock()
	m.saveState()
	if err := m.sync.Sync(ctx); err != nil {
		m.mu.Lock()
		m.canary.apps[name] = c
		m.mu.Unlock()
		m.saveState()
		return fmt.Errorf("aborting the canary of %s: %w", name, err)
	}
	canarySettle(ctx)
	m.log.Info("canary aborted", "app", name, "version", versionID(c.v))
	if c.v == nil {
		return nil
	}
	if live != nil {
		m.restoreIncoming(c.v, live)
	}
	m.retire(m.detached(ctx), c.v)
	return nil
}

// dropCanary forgets name's canary as the app is removed; its version
// drains.
func (m *Manager) dropCanary(ctx context.Context, name string) {
	m.mu.Lock()
	c := m.canary.apps[name]
	delete(m.canary.apps, name)
	m.mu.Unlock()
	if c != nil && c.v != nil {
		m.retire(ctx, c.v)
	}
}

// restoreIncoming puts the live version's bundle in incoming/ while it
// still holds the aborted canary's.
func (m *Manager) restoreIncoming(canary, live *version) {
	dst := filepath.Join(m.cfg.Incoming(), canary.app+".keter")
	fi, err := os.Stat(dst)
	if err != nil || identify(fi) != canary.file {
		return // gone or replaced: the operator's newer choice stands
	}
	src, err := m.liveBundle(live)
	if err != nil {
		m.log.Warn("the aborted canary's bundle stays in incoming; a rescan or restart deploys it as the canary or live version", "app", canary.app, "err", err)
		return
	}
	if _, err := CopyAtomic(src, dst, 0o644); err != nil {
		m.log.Warn("putting the live bundle back in incoming", "app", canary.app, "err", err)
	}
}

// canaryUnit follows a canary unit's state: while one is not running the
// canary's clients are served by the live version.
func (m *Manager) canaryUnit(ctx context.Context, s unitgen.Status) {
	m.mu.Lock()
	c := m.canary.apps[s.Meta.App]
	if c == nil || c.v == nil || c.v.id != s.Meta.Version {
		m.mu.Unlock()
		return
	}
	if in, _ := c.v.instanceOf(s.Name); in == nil {
		m.mu.Unlock()
		return
	}
	was := c.ready()
	up := s.ActiveState == "active" || s.ActiveState == "reloading"
	switch {
	case up && c.down[s.Name] && c.stable[s.Name] == 0:
		// Back only once it stays up for canaryStable: a crash loop's
		// unit is active for a moment at each start.
		c.gen++
		if c.stable == nil {
			c.stable = map[string]uint64{}
		}
		c.stable[s.Name] = c.gen
		gen, v := c.gen, c.v
		m.mu.Unlock()
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			select {
			case <-time.After(canaryStable):
			case <-ctx.Done():
				return
			}
			m.mu.Lock()
			if cur := m.canary.apps[s.Meta.App]; cur == c && c.v == v && c.stable[s.Name] == gen {
				delete(c.stable, s.Name)
				delete(c.down, s.Name)
			}
			m.mu.Unlock()
			m.canaryChanged(ctx, s, false)
		}()
		return
	case up:
		// Still up, or waiting to count as up.
	default:
		if c.down == nil {
			c.down = map[string]bool{}
		}
		c.down[s.Name] = true
		delete(c.stable, s.Name)
	}
	now := c.ready()
	m.mu.Unlock()
	if was != now {
		m.canaryChanged(ctx, s, was)
	}
}

// canaryStable is how long a canary unit that was down must stay up
// before its canary serves again.
var canaryStable = 2 * time.Second

// canaryChanged tells the proxy a canary's readiness may have changed
// (was: what it was before).
func (m *Manager) canaryChanged(ctx context.Context, s unitgen.Status, was bool) {
	m.mu.Lock()
	c := m.canary.apps[s.Meta.App]
	now := c != nil && c.ready()
	m.mu.Unlock()
	if was == now {
		return
	}
	if now {
		m.log.Info("canary serving again", "app", s.Meta.App, "version", s.Meta.Version)
	} else {
		m.log.Warn("a canary unit is not running; its clients go to the live version", "app", s.Meta.App, "version", s.Meta.Version, "unit", s.Name, "state", s.ActiveState)
	}
	if err := m.sync.Sync(ctx); err != nil && ctx.Err() == nil {
		m.log.Error("moving the canary's clients", "app", s.Meta.App, "err", err)
	}
}

// canaryLive is name's canary for the proxy; m.mu is held.
func (m *Manager) canaryLive(name string) *CanaryLive {
	c := m.canary.apps[name]
	if c == nil || c.v == nil {
		return nil
	}
	return &CanaryLive{Version: c.v.id, Ports: c.v.portSlots(), Percent: c.percent, Ready: c.ready()}
}

// canaryStatus is name's canary for keter status; m.mu is held.
func (m *Manager) canaryStatus(name string) *CanaryStatus {
	c := m.canary.apps[name]
	if c == nil {
		return nil
	}
	s := &CanaryStatus{Percent: c.percent, Since: c.since, Ready: c.ready(), Down: slices.Sorted(maps.Keys(c.down)), Requests: c.requests}
	if v := c.v; v != nil {
		s.Version = &VersionStatus{
			Version: v.id, Digest: v.digest, Dir: v.dir, Hosts: v.cfg.Hosts(),
			Ports: v.portSlots(), Fronts: v.canarySlots(), Units: v.units, DeployedAt: v.deployedAt,
		}
	}
	return s
}

// canaryRecords are the canaries for the state file; m.mu is held.
func (m *Manager) canaryRecords() map[string]canaryRecord {
	if len(m.canary.apps) == 0 {
		return nil
	}
	out := map[string]canaryRecord{}
	for name, c := range m.canary.apps {
		r := canaryRecord{Percent: c.percent, Since: c.since}
		if c.v != nil {
			rec := c.v.record()
			r.Version = &rec
		}
		out[name] = r
	}
	return out
}

// adoptCanaries takes up the canaries of the state file: a canary whose
// units all run serves again; one whose units are gone waits for its
// bundle again (the rescan that follows deploys it from incoming/).
func (m *Manager) adoptCanaries(recs map[string]canaryRecord, running map[string]unitgen.Status) []*version {
	var out []*version
	for name, rec := range recs {
		if m.live[name] == nil {
			m.log.Warn("dropping the canary of an app that is not live", "app", name)
			continue
		}
		if m.canary.apps == nil {
			m.canary.apps = map[string]*canaryState{}
		}
		c := &canaryState{percent: rec.Percent, since: rec.Since}
		m.canary.apps[name] = c
		if rec.Version == nil {
			continue
		}
		v, why := m.adoptable(name, *rec.Version, running)
		if v == nil {
			m.log.Warn("not re-adopting the canary version; its bundle will be deployed again", "app", name, "version", rec.Version.Version, "reason", why)
			continue
		}
		v.canary = m.live[name].canary
		m.holdPorts(v)
		c.v = v
		out = append(out, v)
		m.log.Info("re-adopted canary version", "app", name, "version", v.id, "percent", c.percent)
	}
	return out
}

// canaryVersions are the running canary versions; only reconcile calls it.
func (m *Manager) canaryVersions() []*version {
	var out []*version
	for _, c := range m.canary.apps {
		if c.v != nil {
			out = append(out, c.v)
		}
	}
	return out
}

// sameAsCanary reports whether a bundle file or digest is name's canary's.
func (m *Manager) sameAsCanary(name string, f fileID, digest string) bool {
	v := m.canaryVersion(name)
	return v != nil && (v.file == f || (digest != "" && v.digest == digest))
}

// takeCanaryFronts gives v the app's canary fronts: from's, then fresh
// ones up to as many as the stanza's live fronts, while ports are
// plenty. Without a port map (no stop hook) there are none.
func (m *Manager) takeCanaryFronts(v, from *version) {
	if m.hook == nil {
		return
	}
	if v.canary == nil {
		v.canary = map[int][]int{}
	}
	for i := range v.web {
		have := slices.Clone(v.canary[i])
		if from != nil && len(from.canary[i]) > len(have) {
			have = slices.Clone(from.canary[i])
		}
		for len(have) < len(v.frontsOf(i)) && m.ports.plenty() {
			f, err := m.ports.Take()
			if err != nil {
				break
			}
			have = append(have, f)
		}
		if len(have) > 0 {
			v.canary[i] = have
		}
	}
}

// canarySlots are v's canary fronts per webapp stanza.
func (v *version) canarySlots() slots {
	out := slots{}
	for i, fs := range v.canary {
		if len(fs) > 0 {
			out[i] = fs
		}
	}
	return out
}

func versionID(v *version) string {
	if v == nil {
		return ""
	}
	return v.id
}

// CountRequest counts a request nginx sent to front while its app's
// canary runs: to the canary when front is a canary front and the canary
// is serving (else the map sends it to the live version), to the live
// version when front is one of its fronts.
func (m *Manager) CountRequest(front int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for name, c := range m.canary.apps {
		live := m.live[name]
		if live == nil || c.v == nil {
			continue
		}
		for i := range live.web {
			switch {
			case slices.Contains(live.canary[i], front) && c.ready():
				c.requests.Canary++
				return
			case slices.Contains(live.canary[i], front), slices.Contains(live.frontsOf(i), front):
				c.requests.Live++
				return
			}
		}
	}
}
