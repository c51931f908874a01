package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// ErrRelease classes a release step that failed, or did not finish within
// its timeout.
var ErrRelease = errors.New("release step failed")

// releaseGrace is how much longer than the step's timeout keter waits for
// systemd, which stops the step at the timeout itself (SIGTERM, then
// SIGKILL after the stop timeout).
const releaseGrace = 30 * time.Second

// releaseJournalWait bounds the wait for systemd's last line about a
// failed step: the step's own last lines reach the journal through a
// stream of their own and may come in after the unit ended.
const releaseJournalWait = 2 * time.Second

// release runs the bundle's release step (its `release:` key), once per
// new bundle: after plugins, before any unit of the version starts, as a
// oneshot unit in the sandbox and environment of the stanza it borrows
// from. The live version serves on meanwhile. A newer bundle, or keter
// stopping, stops the step.
func (r *rollout) release(ctx context.Context, pluginEnv map[string]string) error {
	m, v := r.m, r.v
	rel := v.cfg.Release
	if rel == nil {
		return nil
	}
	if r.cur != nil && r.cur.digest == v.digest {
		// The same bundle again (a restart, a new environment): its step
		// ran when it was new.
		return nil
	}
	i := v.cfg.ReleaseStanza()
	if i < 0 {
		return fmt.Errorf("%w: no webapp or background stanza to run it as", ErrRelease)
	}
	in, err := r.input(i, pluginEnv)
	if err != nil {
		return err
	}
	u, err := unitgen.Release(in, rel)
	if err != nil {
		return err
	}
	if u.EnvFile != "" {
		defer os.Remove(u.EnvFile) // its secrets are needed only while it runs
	}
	if err := writeUnitFiles(u); err != nil {
		return err
	}
	r.steps.mark("prepare") // the release= part is the step alone
	m.log.Info("release step started", "app", v.app, "version", v.id, "unit", u.Name, "timeout", rel.Timeout.String())
	st, superseded, err := r.runRelease(ctx, u, rel.Timeout+releaseGrace)
	took := time.Since(r.steps.last).Round(time.Millisecond)
	r.steps.mark("release") // failed or not: the deploy's log line says which
	what := rel.Exec
	switch {
	case superseded:
		m.log.Info("release step stopped: a newer bundle is waiting", "app", v.app, "version", v.id, "unit", u.Name)
		return errSuperseded
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("release step %s interrupted: %w", what, err)
	case err != nil:
		return fmt.Errorf("%w: %s: %w", ErrRelease, what, err)
	case st.Result != "success":
		why := fmt.Errorf("%w: %s %s after %s", ErrRelease, what, ended(st, rel.Timeout), took)
		m.waitJournalEnd(ctx, u.Name)
		return m.withLog(ctx, u.Name, systemdOf(v.cfg.Stanzas[i]), why)
	}
	m.log.Info("release step done", "app", v.app, "version", v.id, "unit", u.Name, "duration", took.String())
	return nil
}

// runRelease runs u until it ends, within bound, stopping it when a newer
// bundle is waiting (superseded).
func (r *rollout) runRelease(ctx context.Context, u unitgen.Unit, bound time.Duration) (st unitgen.Status, superseded bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		done = make(chan struct{})
	)
	if r.w != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(200 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if r.w.superseded() {
						mu.Lock()
						superseded = true
						mu.Unlock()
						cancel() // Run stops the unit
						return
					}
				}
			}
		}()
	}
	st, err = r.m.units.Run(ctx, u)
	close(done)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	return st, superseded && err != nil, err
}

// stepsOf is the steps a deploy took, for its failure's log line.
func stepsOf(v *version) string {
	if v == nil {
		return ""
	}
	return v.steps.String()
}

// systemdOf is a stanza's systemd: settings, for the sandbox diagnosis.
func systemdOf(s bundle.Stanza) bundle.Systemd {
	switch {
	case s.WebApp != nil:
		return s.WebApp.Systemd
	case s.Background != nil:
		return s.Background.Systemd
	}
	return bundle.Systemd{}
}

// ended says how a failed step ended, from systemd's record.
func ended(st unitgen.Status, timeout time.Duration) string {
	switch {
	case st.Result == "timeout":
		return fmt.Sprintf("did not finish within its timeout of %s (release: timeout) and was stopped", timeout)
	case st.ExecMainCode == unitgen.CodeExited:
		return fmt.Sprintf("exited with status %d", st.ExecMainStatus)
	case st.ExecMainCode == unitgen.CodeKilled || st.ExecMainCode == unitgen.CodeDumped:
		return fmt.Sprintf("was killed by signal %d", st.ExecMainStatus)
	}
	return "failed (" + st.Result + ")"
}

// waitJournalEnd waits, briefly, until systemd's line saying how the unit
// failed is in the journal, so the lines the step printed before are too.
func (m *Manager) waitJournalEnd(ctx context.Context, unit string) {
	deadline := time.Now().Add(releaseJournalWait)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		lines, err := m.units.Journal(ctx, unit, 5)
		if err == nil && strings.Contains(strings.Join(lines, "\n"), "Failed with result") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
