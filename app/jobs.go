package app

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// Scheduled jobs. Each `scheduled` stanza of the live version runs as a
// transient timer plus the service it starts. The timers start after the
// switch and stop when the version is replaced or removed; a run under way
// then finishes under its old version (or is stopped at its max-run-time)
// and the old folder is deleted only after. systemd never starts a
// service that runs already, so runs never overlap. Jobs are not part of
// the "every unit active" rule for re-adoption: a job service is inactive
// between runs.

// JobUnits is what jobs need from systemd beyond Units; the dbus package
// implements it.
type JobUnits interface {
	StartJob(ctx context.Context, j unitgen.Job) error
	RunJob(ctx context.Context, service string) error
	JobState(ctx context.Context, timer, service string) (unitgen.JobState, error)
	ActiveState(ctx context.Context, name string) (string, error)
	ResetFailed(ctx context.Context, name string) error
}

// ErrNoJob classes a job name the app's live version does not have.
var ErrNoJob = errors.New("no such job")

// ErrJobRunning classes a job started by hand while a run is under way.
var ErrJobRunning = errors.New("job is running")

func running(activeState string) bool {
	switch activeState {
	case "active", "activating", "deactivating", "reloading":
		return true
	}
	return false
}

// jobPoll is how often a retired version's running jobs are looked at.
var jobPoll = 250 * time.Millisecond

// job is one scheduled stanza of a version.
type job struct {
	Name    string        `json:"name"`
	Timer   string        `json:"timer"`
	Service string        `json:"service"`
	MaxRun  time.Duration `json:"max_run_ns,omitempty"`
	unit    *unitgen.Job  // built for this deploy; nil once adopted
}

// JobStatus is one job of an app's live version, for status.
type JobStatus struct {
	Name     string `json:"name"`
	Schedule string `json:"schedule"`
	// OnCalendar is the schedule as systemd got it.
	OnCalendar string        `json:"on_calendar"`
	Persistent bool          `json:"persistent"`
	MaxRunTime time.Duration `json:"max_run_time_ns,omitempty"`
	Timer      string        `json:"timer"`
	Service    string        `json:"service"`
	// State is the service's: active while a run is under way.
	State string `json:"state,omitempty"`
	// LastStart and LastEnd bound the last run; LastEnd is zero while it runs.
	LastStart time.Time `json:"last_start,omitzero"`
	LastEnd   time.Time `json:"last_end,omitzero"`
	// LastResult is systemd's Result of the last run ("success",
	// "exit-code", "timeout", "signal"); ExitStatus its exit status, or
	// the signal that ended it when Signal is set.
	LastResult string        `json:"last_result,omitempty"`
	ExitStatus int32         `json:"exit_status"`
	Signal     bool          `json:"signal,omitempty"`
	Duration   time.Duration `json:"duration_ns,omitempty"`
	Next       time.Time     `json:"next,omitzero"`
	Error      string        `json:"error,omitempty"`
}

// Succeeded reports whether the last run ended well.
func (j JobStatus) Succeeded() bool { return j.LastResult == "success" }

func (m *Manager) jobUnits() (JobUnits, error) {
	ju, ok := m.units.(JobUnits)
	if !ok {
		return nil, errors.New("keter's systemd connection cannot run scheduled jobs")
	}
	return ju, nil
}

// prepareJobs builds the version's jobs, checks their schedules with
// systemd, and writes their env files and launchers; nothing starts yet.
// A bad schedule fails the deploy while the old version serves.
func (m *Manager) prepareJobs(v *version, pluginEnv map[string]string) error {
	var errs []error
	for i, s := range v.cfg.Stanzas {
		if s.Scheduled == nil {
			continue
		}
		if _, err := m.jobUnits(); err != nil {
			return err
		}
		if err := checkCalendar(s.Scheduled.OnCalendar); err != nil {
			errs = append(errs, fmt.Errorf("stanzas[%d].schedule: %w", i, err))
			continue
		}
		operator, err := m.OperatorEnv(v.app)
		if err != nil {
			return err
		}
		j, err := unitgen.BuildJob(m.unitInput(v, i, s, pluginEnv, operator))
		if err != nil {
			errs = append(errs, fmt.Errorf("stanzas[%d]: %w", i, err))
			continue
		}
		if err := v.writeUnitFiles(j.Service); err != nil {
			return err
		}
		v.jobs = append(v.jobs, &job{Name: s.Scheduled.Name, Timer: j.Timer, Service: j.Service.Name, MaxRun: s.Scheduled.MaxRunTime, unit: &j})
	}
	return errors.Join(errs...)
}

// checkCalendar asks systemd whether it reads a schedule; without
// systemd-analyze the timer's start is the check.
func checkCalendar(spec string) error {
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		return nil
	}
	out, err := exec.Command(bin, "calendar", "--iterations=1", "--", spec).CombinedOutput()
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return fmt.Errorf("systemd cannot read the schedule %q (%s); see `man systemd.time`, CALENDAR EVENTS", spec, msg)
	}
	return nil
}

// startJobs starts the live version's timers. A timer that fails is
// logged and shown as the app's last error: the version serves anyway.
func (m *Manager) startJobs(ctx context.Context, v *version) {
	if len(v.jobs) == 0 {
		return
	}
	ju, err := m.jobUnits()
	if err != nil {
		m.log.Error("starting scheduled jobs", "app", v.app, "err", err)
		return
	}
	for _, j := range v.jobs {
		if j.unit == nil {
			continue
		}
		if busy := m.olderRun(ctx, ju, v, j.Name); busy != "" {
			m.log.Info("an older version's run of the job is under way; its timer starts when that run ends", "app", v.app, "version", v.id, "job", j.Name, "running", busy)
			m.startJobAfter(ctx, ju, v, j, busy)
			continue
		}
		m.startJob(ctx, ju, v, j)
	}
}

func (m *Manager) startJob(ctx context.Context, ju JobUnits, v *version, j *job) {
	if v.persistent(j) {
		m.carryStamp(v, j)
	}
	if err := ju.StartJob(ctx, *j.unit); err != nil {
		m.log.Error("starting a scheduled job; it will not run until the app is deployed again", "app", v.app, "version", v.id, "job", j.Name, "err", err)
		return
	}
	m.log.Info("job scheduled", "app", v.app, "version", v.id, "job", j.Name, "unit", j.Timer)
}

// olderRun names the service of a run of job name that a version of v's
// app older than v (one still draining) has under way, "" if none: v's
// run must not overlap it.
func (m *Manager) olderRun(ctx context.Context, ju JobUnits, v *version, name string) string {
	var svcs []string
	m.mu.Lock()
	for d := range m.draining {
		if d.app == v.app && d != v {
			if j := d.job(name); j != nil {
				svcs = append(svcs, j.Service)
			}
		}
	}
	m.mu.Unlock()
	for _, s := range svcs {
		if st, err := ju.ActiveState(ctx, s); err == nil && running(st) {
			return s
		}
	}
	return ""
}

// startJobAfter starts j's timer once the older run busy has ended, if v
// is still live then. A tick meanwhile is skipped, as systemd skips one
// while the job's own service runs; a persistent job runs it when its
// timer starts.
func (m *Manager) startJobAfter(ctx context.Context, ju JobUnits, v *version, j *job, busy string) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return // the next start schedules it (adoptJobs)
			case <-time.After(jobPoll):
			}
			if st, err := ju.ActiveState(ctx, busy); err == nil && running(st) {
				continue
			}
			if m.liveVersion(v.app) != v {
				return
			}
			if busy = m.olderRun(ctx, ju, v, j.Name); busy == "" {
				m.startJob(ctx, ju, v, j)
				return
			}
		}
	}()
}

// stopTimers stops a retiring version's timers: no new run starts. Runs
// under way go on.
func (m *Manager) stopTimers(ctx context.Context, v *version) {
	for _, j := range v.jobs {
		if err := m.units.Stop(ctx, j.Timer); err != nil {
			m.log.Error("stopping job timer", "app", v.app, "version", v.id, "unit", j.Timer, "err", err)
		}
	}
}

// waitJobs returns once none of a retired version's job services runs:
// each ends by itself or at its max-run-time (systemd stops it). ok is
// false when ctx ended first: the version stays draining, and the next
// start waits on.
func (m *Manager) waitJobs(ctx context.Context, v *version) bool {
	if len(v.jobs) == 0 {
		return true
	}
	ju, err := m.jobUnits()
	if err != nil {
		return true
	}
	m.stopTimers(ctx, v)
	logged := false
	for {
		if ctx.Err() != nil {
			return false
		}
		busy := ""
		for _, j := range v.jobs {
			st, err := ju.ActiveState(ctx, j.Service)
			if err != nil && ctx.Err() == nil {
				m.log.Warn("reading a job's state", "app", v.app, "unit", j.Service, "err", err)
				continue
			}
			if running(st) {
				busy = j.Service
				break
			}
		}
		if busy == "" {
			for _, j := range v.jobs {
				_ = ju.ResetFailed(context.WithoutCancel(ctx), j.Service) // a failed run kept it loaded
			}
			return true
		}
		if !logged {
			m.log.Info("old version's job still running; its folder is kept until it ends", "app", v.app, "version", v.id, "unit", busy)
			logged = true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(jobPoll):
		}
	}
}

// adoptJobs keeps the live versions' timers after a keter restart and
// starts those that do not run (keter stopped between the switch and
// their start).
func (m *Manager) adoptJobs(ctx context.Context, running map[string]unitgen.Status) {
	for _, v := range m.liveList() {
		missing := false
		for _, j := range v.jobs {
			if st, ok := running[j.Timer]; !ok || st.ActiveState != "active" {
				missing = true
			}
		}
		if !missing {
			continue
		}
		env, err := m.pluginEnv(ctx, v)
		if err != nil {
			m.log.Error("re-scheduling jobs", "app", v.app, "err", err)
			continue
		}
		for i, s := range v.cfg.Stanzas {
			if s.Scheduled == nil {
				continue
			}
			j := v.job(s.Scheduled.Name)
			if j == nil {
				continue
			}
			if st, ok := running[j.Timer]; ok && st.ActiveState == "active" {
				continue
			}
			operator, err := m.OperatorEnv(v.app)
			var u unitgen.Job
			if err == nil {
				u, err = unitgen.BuildJob(m.unitInput(v, i, s, env, operator))
			}
			if err == nil {
				err = writeUnitFiles(u.Service) // its env file is the version's already
			}
			if err != nil {
				m.log.Error("re-scheduling job", "app", v.app, "job", j.Name, "err", err)
				continue
			}
			j.unit = &u
		}
		m.startJobs(ctx, v)
	}
}

func (v *version) job(name string) *job {
	for _, j := range v.jobs {
		if j.Name == name {
			return j
		}
	}
	return nil
}

// jobUnitNames are every unit of v's jobs.
func (v *version) jobUnitNames() []string {
	var out []string
	for _, j := range v.jobs {
		out = append(out, j.Timer, j.Service)
	}
	return out
}

// RunJob starts a job of an app's live version now.
func (m *Manager) RunJob(ctx context.Context, app, name string) (string, error) {
	v := m.liveVersion(app)
	if v == nil {
		return "", fmt.Errorf("app %q is not live: %w", app, ErrUnknownApp)
	}
	j := v.job(name)
	if j == nil {
		names := make([]string, 0, len(v.jobs))
		for _, j := range v.jobs {
			names = append(names, j.Name)
		}
		return "", fmt.Errorf("app %q has no job %q (its jobs: %s): %w", app, name, strings.Join(names, ", "), ErrNoJob)
	}
	ju, err := m.jobUnits()
	if err != nil {
		return "", err
	}
	if st, err := ju.ActiveState(ctx, j.Service); err == nil && running(st) {
		return j.Service, fmt.Errorf("job %q of %q is running already (%s is %s); systemd does not start it twice: %w", name, app, j.Service, st, ErrJobRunning)
	}
	if busy := m.olderRun(ctx, ju, v, name); busy != "" {
		return j.Service, fmt.Errorf("job %q of %q is running already under an older version (%s); runs never overlap: %w", name, app, busy, ErrJobRunning)
	}
	if err := ju.RunJob(ctx, j.Service); err != nil {
		return j.Service, err
	}
	m.log.Info("job started by hand", "app", app, "version", v.id, "job", name, "unit", j.Service)
	return j.Service, nil
}

// Jobs reads every live app's jobs from systemd, by app.
func (m *Manager) Jobs(ctx context.Context) map[string][]JobStatus {
	m.mu.Lock()
	live := make([]*version, 0, len(m.live))
	for _, v := range m.live {
		if len(v.jobs) > 0 {
			live = append(live, v)
		}
	}
	m.mu.Unlock()
	ju, err := m.jobUnits()
	if err != nil || len(live) == 0 {
		return nil
	}
	out := map[string][]JobStatus{}
	for _, v := range live {
		for _, j := range v.jobs {
			js := JobStatus{Name: j.Name, Timer: j.Timer, Service: j.Service, MaxRunTime: j.MaxRun}
			if s := v.scheduled(j.Name); s != nil {
				js.Schedule, js.OnCalendar, js.Persistent = s.Schedule, s.OnCalendar, s.Persistent
			}
			st, err := ju.JobState(ctx, j.Timer, j.Service)
			if err != nil {
				js.Error = err.Error()
				out[v.app] = append(out[v.app], js)
				continue
			}
			js.State, js.Next = st.Active, st.Next
			if !st.Started.IsZero() {
				js.LastStart = st.Started
				if !st.Exited.IsZero() && !st.Exited.Before(st.Started) {
					js.LastEnd, js.LastResult = st.Exited, st.Result
					js.Duration = st.Exited.Sub(st.Started)
					js.ExitStatus = st.ExecMainStatus
					js.Signal = st.ExecMainCode == unitgen.CodeKilled || st.ExecMainCode == unitgen.CodeDumped
				}
			}
			out[v.app] = append(out[v.app], js)
		}
	}
	return out
}

func (v *version) scheduled(name string) *bundle.Scheduled {
	if v.cfg == nil {
		return nil
	}
	for _, s := range v.cfg.Stanzas {
		if s.Scheduled != nil && s.Scheduled.Name == name {
			return s.Scheduled
		}
	}
	return nil
}

func jobServices(js []*job) []string {
	var out []string
	for _, j := range js {
		out = append(out, j.Service)
	}
	return out
}
