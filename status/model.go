package status

import (
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/unitgen"
	"github.com/keter-systemd/keter/usage"
)

// App states, as shown on the page and counted by keter_apps{state}.
const (
	StateLive      = "live"      // serving, every live unit active
	StateDegraded  = "degraded"  // serving, but a live unit is not active
	StateSleeping  = "sleeping"  // idle: its units stopped, its sockets wait for the next request
	StateDeploying = "deploying" // a bundle is being taken live
	StateQueued    = "queued"    // a bundle waits in incoming, not yet picked up
	StateFailed    = "failed"    // nothing serving; the last deploy failed
)

// States lists every state, for metrics that report zeros too.
var States = []string{StateLive, StateDegraded, StateSleeping, StateDeploying, StateQueued, StateFailed}

// App is one app as the API and page show it: the core's record plus
// what systemd and journald say about its units.
type App struct {
	app.AppStatus
	State string   `json:"state"`
	Units []Unit   `json:"units"`
	Log   []string `json:"log,omitempty"` // recent lines of the live units
	// LogHidden says why Log and LastLog are left out for this caller.
	LogHidden string `json:"log_hidden,omitempty"`
	// Usage is per stanza: memory and tasks now, keter's totals since
	// each stanza's since for the rest.
	Usage []usage.Stanza `json:"usage,omitempty"`
	// Certs are the live hosts' certificates from the ACME CA.
	Certs []Cert `json:"certs,omitempty"`
}

// Unit is one systemd unit of an app, any version.
type Unit struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Stanza   string `json:"stanza"`
	Instance int    `json:"instance"` // 1..N of the stanza's instances
	Active   string `json:"active_state"`
	Sub      string `json:"sub_state"`
	Result   string `json:"result,omitempty"`
	PID      uint32 `json:"main_pid,omitempty"`
	Restarts uint32 `json:"restarts"`
	Live     bool   `json:"live"`
	// Job names the scheduled job a timer or job service runs; such units
	// are not counted as the live version's (inactive between runs).
	Job string `json:"job,omitempty"`
	// Usage is what systemd counts for the unit's current run.
	Usage *usage.Unit `json:"usage,omitempty"`
}

// Keter is the daemon itself.
type Keter struct {
	Version string    `json:"version"`
	State   string    `json:"state"` // starting | ready
	Root    string    `json:"root"`
	Started time.Time `json:"started"`
	PID     int       `json:"pid"`
}

// apps gathers every app; logLines > 0 adds that many recent lines per
// live unit. Units or journal errors leave those parts empty: the page
// must still show what the core knows. A caller who may not read log
// lines (see logsHidden) gets none, a failed deploy's neither.
func (s *Server) apps(ctx context.Context, logLines int) []App {
	hidden := logsHidden(ctx)
	if hidden != "" {
		logLines = 0
	}
	listedAt := time.Now()
	units, err := s.o.Units.List(ctx, "keter-app-")
	if err != nil {
		s.o.Log.Debug("listing app units for status", "err", err)
	}
	var totals map[usage.Key]usage.Stanza
	if err == nil && s.o.Usage != nil {
		totals = s.o.Usage.Observe(ctx, units, listedAt)
	}
	usageOf := stanzaUsage(totals)
	byApp := map[string][]unitgen.Status{}
	for _, u := range units {
		byApp[u.Meta.App] = append(byApp[u.Meta.App], u)
	}
	var out []App
	known := map[string]bool{}
	certs := map[string]Cert{}
	for _, c := range s.certs() {
		certs[c.Host] = c
	}
	jobs := s.jobs(ctx)
	for _, st := range s.o.Core.Status() {
		known[st.Name] = true
		st.Jobs = jobs[st.Name]
		a := App{AppStatus: st, Units: []Unit{}, Usage: usageOf[st.Name]}
		if st.Live != nil {
			a.Certs = certsOf(certs, st.Live.Hosts)
		}
		live := map[string]bool{}
		if st.Live != nil {
			for _, n := range st.Live.Units {
				live[n] = true
			}
		}
		degraded := false
		sleep := sleepState(st.Live, byApp[st.Name])
		for _, u := range byApp[st.Name] {
			a.Units = append(a.Units, Unit{
				Name: u.Name, Version: u.Meta.Version, Stanza: u.Meta.Stanza, Instance: u.Meta.InstanceNumber(),
				Active: u.ActiveState, Sub: u.SubState, Result: u.Result,
				PID: u.MainPID, Restarts: u.NRestarts, Live: live[u.Name], Usage: unitUsage(u), Job: u.Meta.Job,
			})
			if live[u.Name] && u.ActiveState != "active" && u.ActiveState != "reloading" && !sleep.asleep[u.Name] {
				degraded = true
			}
		}
		sort.Slice(a.Units, func(i, j int) bool { return a.Units[i].Name < a.Units[j].Name })
		switch {
		case st.Deploying:
			a.State = StateDeploying
		case st.Live == nil:
			a.State = StateFailed
		case degraded || (err == nil && len(byApp[st.Name]) == 0):
			a.State = StateDegraded
		case sleep.all:
			a.State = StateSleeping
		default:
			a.State = StateLive
		}
		if logLines > 0 && st.Live != nil {
			for _, n := range st.Live.Units {
				lines, jerr := s.o.Units.Journal(ctx, n, logLines)
				if jerr != nil {
					continue
				}
				if len(st.Live.Units) > 1 {
					for i := range lines {
						lines[i] = n + ": " + lines[i]
					}
				}
				a.Log = append(a.Log, lines...)
			}
		}
		out = append(out, a)
	}
	// Bundles keter has not picked up yet (e.g. while it starts).
	if entries, err := os.ReadDir(s.o.Incoming); err == nil {
		for _, e := range entries {
			name, ok := strings.CutSuffix(e.Name(), ".keter")
			if !ok || name == "" || name[0] == '.' || known[name] {
				continue
			}
			out = append(out, App{
				AppStatus: app.AppStatus{Name: name, LastBundle: filepath.Join(s.o.Incoming, e.Name())},
				State:     StateQueued, Units: []Unit{},
			})
		}
	}
	if hidden != "" {
		for i := range out {
			out[i].Log, out[i].LastLog, out[i].LogHidden = nil, nil, hidden
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (s *Server) keter() Keter {
	st := "starting"
	if s.ready.Load() {
		st = "ready"
	}
	return Keter{Version: s.o.Version, State: st, Root: s.o.Root, Started: s.started, PID: os.Getpid()}
}
