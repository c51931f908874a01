package app

import (
	"errors"
	"sort"
	"time"
)

// AppStatus is what keter knows about one app, for the CLI and status page.
type AppStatus struct {
	Name       string         `json:"name"`
	Live       *VersionStatus `json:"live,omitempty"`
	Deploying  bool           `json:"deploying"`
	LastBundle string         `json:"last_bundle,omitempty"`
	LastResult string         `json:"last_result,omitempty"` // live | failed | superseded
	LastError  string         `json:"last_error,omitempty"`
	LastLog    []string       `json:"last_log,omitempty"`
	LastHint   string         `json:"last_hint,omitempty"` // the sandbox setting that likely stopped the app
	LastAt     time.Time      `json:"last_at,omitzero"`
	LastDigest string         `json:"last_digest,omitempty"`
	Duration   time.Duration  `json:"last_duration_ns,omitempty"`
	// Maintenance is set while the app is in maintenance.
	Maintenance *MaintenanceStatus `json:"maintenance,omitempty"`
	// Canary is set while the app has a canary (canary.go).
	Canary *CanaryStatus `json:"canary,omitempty"`
	// Draining are old versions still serving what they were sent before
	// a switch.
	Draining []DrainingStatus `json:"draining,omitempty"`
	// Jobs are the live version's scheduled jobs, as systemd reports them
	// (filled by the status server).
	Jobs []JobStatus `json:"jobs,omitempty"`
}

// DrainingStatus is an old version that drains: it is stopped once no
// connection to Ports is left, or at Until.
type DrainingStatus struct {
	Version string        `json:"version"`
	Ports   map[int][]int `json:"ports"`
	Units   []string      `json:"units"`
	Until   time.Time     `json:"until"`
}

// VersionStatus describes a live version.
type VersionStatus struct {
	Version string   `json:"version"`
	Digest  string   `json:"digest"`
	Dir     string   `json:"dir"`
	Hosts   []string `json:"hosts"`
	// Ports are each webapp stanza's instances' own ports (stanza index →
	// one per instance), and Fronts the app's stable front ports for them.
	Ports      map[int][]int `json:"ports"`
	Fronts     map[int][]int `json:"fronts,omitempty"`
	Units      []string      `json:"units"`
	DeployedAt time.Time     `json:"deployed_at"`
	// Sockets are the sockets of the units that sleep when idle (unit →
	// its socket): such a unit inactive while its socket listens sleeps.
	Sockets map[string]string `json:"sockets,omitempty"`
}

// Status lists every known app, sorted by name.
func (m *Manager) Status() []AppStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]AppStatus, 0, len(m.status))
	for name, s := range m.status {
		c := *s
		if v := m.live[name]; v != nil {
			c.Live = &VersionStatus{
				Version: v.id, Digest: v.digest, Dir: v.dir, Hosts: v.cfg.Hosts(),
				Ports: v.portSlots(), Fronts: v.frontSlots(), Units: v.units, DeployedAt: v.deployedAt,
				Sockets: v.sockets(),
			}
		}
		c.Maintenance = m.maintenanceStatus(name)
		c.Canary = m.canaryStatus(name)
		for v, until := range m.draining {
			if v.app == name {
				c.Draining = append(c.Draining, DrainingStatus{Version: v.id, Ports: v.portSlots(), Units: v.units, Until: until})
			}
		}
		sort.Slice(c.Draining, func(i, j int) bool { return c.Draining[i].Version < c.Draining[j].Version })
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *Manager) entry(name string) *AppStatus {
	s := m.status[name]
	if s == nil {
		s = &AppStatus{Name: name}
		m.status[name] = s
	}
	return s
}

func (m *Manager) noteDeploying(name, bundlePath string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.entry(name)
	s.Deploying = true
	s.LastBundle = bundlePath
}

// noteResult records a deploy's outcome; v is nil for failures and no-ops.
func (m *Manager) noteResult(name string, v *version, err error, started time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.entry(name)
	s.Deploying = false
	switch {
	case v != nil:
		s.LastResult, s.LastError, s.LastLog, s.LastHint, s.LastDigest = "live", "", nil, "", v.digest
	case errors.Is(err, errSuperseded):
		s.LastResult, s.LastError, s.LastLog, s.LastHint = "superseded", err.Error(), nil, ""
	case err != nil:
		s.LastResult, s.LastError, s.LastLog, s.LastHint = "failed", err.Error(), nil, ""
		var ae *AppError
		if errors.As(err, &ae) {
			s.LastError, s.LastLog, s.LastHint = ae.Err.Error(), ae.Log, ae.Hint
		}
	default:
		return // unchanged bundle: keep the previous record
	}
	s.LastAt = time.Now()
	s.Duration = time.Since(started)
	m.metrics.observe(s.LastResult, s.Duration)
}

// noteAttempt records the digest a deploy tried, so `keter deploy` can
// tell its own bundle's outcome from another's; v is nil when the bundle
// could not even be read.
func (m *Manager) noteAttempt(name string, v *version) {
	if v == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.entry(name).LastDigest = v.digest
}

// noteCrashLoop records that keter gave up on a crash-looping live unit.
func (m *Manager) noteCrashLoop(name, unit string, d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.entry(name)
	s.LastResult = ResultFailed
	s.LastError = "unit " + unit + " kept crashing for " + d.Round(time.Second).String() + " and was stopped; fix the app and deploy it again"
	s.LastAt = time.Now()
}

// forget drops a removed app's record.
func (m *Manager) forget(name string) {
	m.mu.Lock()
	delete(m.status, name)
	m.mu.Unlock()
}
