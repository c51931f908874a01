package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// waitReady polls the webapp until it answers, its unit fails, a newer
// bundle arrives, or ensure-alive-time-bound runs out.
// sl is the instance's sleeper, nil when it does not sleep.
func (m *Manager) waitReady(ctx context.Context, w *worker, unit string, port int, sl *sleeper, s *bundle.WebApp) error {
	bound := time.Duration(s.EnsureAliveTimeBound) * time.Microsecond
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	p := newProbe(port, s.Hosts[0], s.HealthCheckPath)
	lastCheck := time.Now()
	var lastErr error
	for attempt := 0; ; attempt++ {
		if lastErr = p.once(ctx); lastErr == nil {
			// An answer counts only from our unit: another program may
			// have taken the port between keter's check and the app's
			// bind (another keter on the host with the same ranges).
			if lastErr = m.unitRunning(ctx, unit); lastErr == nil {
				if sl != nil {
					lastErr = m.sleepListens(ctx, unit, sl)
				} else {
					lastErr = m.units.Listens(ctx, unit, port)
				}
				if lastErr == nil {
					return nil
				}
			}
		}
		if time.Since(lastCheck) > 200*time.Millisecond || attempt == 3 {
			lastCheck = time.Now()
			if err := m.unitHealthy(ctx, unit); err != nil {
				return m.withLog(ctx, unit, s.Systemd, err)
			}
		}
		if w != nil && w.superseded() {
			return errSuperseded
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return m.withLog(context.WithoutCancel(ctx), unit, s.Systemd,
					fmt.Errorf("%w within ensure-alive-time-bound %s on port %d: %v", ErrNotReady, bound, port, lastErr))
			}
			return ctx.Err()
		case <-time.After(backoff(attempt)):
		}
	}
}

// unitStatus asks systemd about exactly one unit (List matches by prefix,
// and one app's name may prefix another's); found is false once it is gone.
func (m *Manager) unitStatus(ctx context.Context, unit string) (st unitgen.Status, found bool, err error) {
	if r, ok := m.units.(statusReader); ok {
		return r.Status(ctx, unit)
	}
	sts, err := m.units.List(ctx, unit)
	if err != nil {
		return st, false, err
	}
	for _, st := range sts {
		if st.Name == unit {
			return st, true, nil
		}
	}
	return st, false, nil
}

// unitHealth is unitStatus without the unit's figures and exit status:
// its state, restarts and result, which a waiting deploy reads five times
// a second.
func (m *Manager) unitHealth(ctx context.Context, unit string) (unitgen.Status, bool, error) {
	if r, ok := m.units.(healthReader); ok {
		return r.Health(ctx, unit)
	}
	return m.unitStatus(ctx, unit)
}

// unitHealthy fails when systemd has given up on the unit or it keeps
// crashing while we wait for it.
func (m *Manager) unitHealthy(ctx context.Context, unit string) error {
	st, found, err := m.unitHealth(ctx, unit)
	switch {
	case err != nil:
		return nil // the probe decides; a bus hiccup is not the app's fault
	case !found:
		return fmt.Errorf("%w: unit %s is gone", ErrNotReady, unit)
	case st.ActiveState == "failed":
		return fmt.Errorf("%w: unit %s failed (%s)", ErrNotReady, unit, st.Result)
	case st.NRestarts >= 2:
		return fmt.Errorf("%w: unit %s is crash-looping (%d restarts)", ErrNotReady, unit, st.NRestarts)
	}
	return nil
}

// stater is what Units may also do: read one unit's state alone, without
// its service's properties (the dbus package does).
type stater interface {
	State(ctx context.Context, name string) (unitgen.Status, bool, error)
}

// statusReader is what Units may also do: read one unit by name with its
// service's figures, which List can only do by a pattern systemd matches
// against every unit it has (the dbus package does).
type statusReader interface {
	Status(ctx context.Context, name string) (unitgen.Status, bool, error)
}

// healthReader is what Units may also do: read one unit's state with
// the few service properties its health needs (the dbus package does).
type healthReader interface {
	Health(ctx context.Context, name string) (unitgen.Status, bool, error)
}

// unitRunning fails unless systemd says the unit is active and running.
func (m *Manager) unitRunning(ctx context.Context, unit string) error {
	get := m.unitStatus
	if s, ok := m.units.(stater); ok {
		get = s.State
	}
	st, found, err := get(ctx, unit)
	switch {
	case err != nil:
		return fmt.Errorf("asking systemd about %s: %w", unit, err)
	case !found:
		return fmt.Errorf("port answered but unit %s is gone", unit)
	case st.ActiveState != "active" || st.SubState != "running":
		return fmt.Errorf("port answered but unit %s is %s (%s)", unit, st.ActiveState, st.SubState)
	}
	return nil
}

// withLog adds the app's last journal lines to a readiness error, and
// what they say about the sandbox (sd is the stanza's systemd: settings).
func (m *Manager) withLog(ctx context.Context, unit string, sd bundle.Systemd, err error) error {
	lines, jerr := m.units.Journal(ctx, unit, diagnoseLines)
	if jerr != nil {
		lines = nil
	}
	st, found, serr := m.unitStatus(ctx, unit)
	hint := sandboxHint(appOfUnit(unit), st, found && serr == nil, lines, unitgen.MemoryDenyWriteExecute(sd))
	lines = lines[max(0, len(lines)-15):]
	if len(lines) == 0 && hint == "" {
		return err
	}
	return &AppError{Err: err, Log: lines, Hint: hint}
}

// AppError is a deploy error with the last lines the app printed and,
// when they point at the sandbox, the setting to look at.
type AppError struct {
	Err  error
	Log  []string
	Hint string
}

func (e *AppError) Error() string {
	s := e.Err.Error()
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	if len(e.Log) > 0 {
		s += "; last log lines:\n  " + strings.Join(e.Log, "\n  ")
	}
	return s
}
func (e *AppError) Unwrap() error { return e.Err }
