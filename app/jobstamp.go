package app

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// Persistent jobs across versions. systemd keeps a persistent timer's
// last trigger in a stamp file named after the timer, and at the timer's
// start runs at once a run it missed since. A job's timer is named after
// its version, and every deploy (a boot too: transient units do not
// survive one, so keter deploys the bundle again) makes a new version:
// its timer would find no stamp and never catch up. So before a
// persistent job's timer starts, keter gives it the newest stamp of the
// app's earlier timers of the same job, and deletes those.

// timerStamps is systemd's folder of stamp files (system manager).
var timerStamps = "/var/lib/systemd/timers"

// carryStamp gives job j of v the last trigger of its app's earlier
// timers of the same job, unless it has its own.
func (m *Manager) carryStamp(v *version, j *job) {
	dst := filepath.Join(timerStamps, "stamp-"+j.Timer)
	entries, err := os.ReadDir(timerStamps)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			m.log.Warn("reading timer stamps; a missed run of a persistent job may not run", "app", v.app, "job", j.Name, "err", err)
		}
		return
	}
	var newest time.Time
	var olds []string
	prefix := "stamp-" + unitgen.AppPrefix(v.app)
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "stamp-")
		if !ok || !strings.HasPrefix(e.Name(), prefix) || name == j.Timer || !strings.HasSuffix(name, unitgen.TimerSuffix) {
			continue
		}
		meta, ok := unitgen.ParseUnitName(name)
		if !ok || meta.App != v.app || meta.Job != j.Name {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue
		}
		if t := fi.ModTime(); t.After(newest) {
			newest = t
		}
		olds = append(olds, filepath.Join(timerStamps, e.Name()))
	}
	if _, err := os.Stat(dst); err != nil && !newest.IsZero() {
		err := os.WriteFile(dst, nil, 0o644)
		if err == nil {
			err = os.Chtimes(dst, newest, newest)
		}
		if err != nil {
			m.log.Warn("carrying a persistent job's last run over; a missed run may not run", "app", v.app, "job", j.Name, "stamp", dst, "err", err)
			os.Remove(dst)
			return
		}
		m.log.Info("persistent job: last run carried over from an earlier version", "app", v.app, "job", j.Name, "last_run", newest.Format(time.RFC3339))
	}
	for _, p := range olds {
		os.Remove(p)
	}
}

// dropStamps deletes the stamps of a removed app's job timers.
func dropStamps(app string) {
	entries, err := os.ReadDir(timerStamps)
	if err != nil {
		return
	}
	for _, e := range entries {
		name, ok := strings.CutPrefix(e.Name(), "stamp-")
		if !ok || !strings.HasPrefix(name, unitgen.AppPrefix(app)) || !strings.HasSuffix(name, unitgen.TimerSuffix) {
			continue
		}
		if meta, ok := unitgen.ParseUnitName(name); ok && meta.App == app && meta.Job != "" {
			os.Remove(filepath.Join(timerStamps, e.Name()))
		}
	}
}

// persistent reports whether job j of v is `persistent: true`.
func (v *version) persistent(j *job) bool {
	s := v.scheduled(j.Name)
	return s != nil && s.Persistent
}
