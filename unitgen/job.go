package unitgen

import (
	"errors"
	"fmt"
	"strings"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
)

// Scheduled jobs run as a transient timer plus the service it starts,
// named keter-app-APP-VERSION-job-JOB.timer and .service. JOB keeps its
// own characters ([a-z0-9_-], see bundle.ValidJobName): the Description
// ("... job=JOB") is what keter reads back; the name reads back too unless
// APP itself contains "-job-".

// TimerSuffix ends a job's timer unit name.
const TimerSuffix = ".timer"

// jobAccuracy is the timer's AccuracySec: systemd's default (1 min) would
// let a job on a short schedule drift by up to a minute.
const jobAccuracy = time.Second

// JobStanza is the STANZA of a job's units (KETER_STANZA, usage): named
// after the job, so it stays the same when stanzas are reordered.
func JobStanza(job string) string { return "job-" + job }

func jobUnitName(app, version, job, sfx string) (string, error) {
	var errs []error
	for _, p := range [][2]string{{"app", app}, {"version", version}} {
		if p[1] == "" {
			errs = append(errs, fmt.Errorf("%w: %s is empty", ErrName, p[0]))
		}
	}
	if err := bundle.ValidJobName(job); err != nil {
		errs = append(errs, fmt.Errorf("%w: %w", ErrName, err))
	}
	if err := errors.Join(errs...); err != nil {
		return "", err
	}
	name := Prefix + escape(app, true) + "-" + escape(version, false) + "-job-" + job + sfx
	if len(name) > maxUnitName {
		return "", fmt.Errorf("%w: %q is longer than %d characters", ErrName, name, maxUnitName)
	}
	return name, nil
}

// Timer is the name of a job's timer; m must be a job's Meta.
func (m Meta) Timer() (string, error) {
	if m.Job == "" {
		return "", fmt.Errorf("%w: %s is not a job", ErrName, m.Stanza)
	}
	return jobUnitName(m.App, m.Version, m.Job, TimerSuffix)
}

// parseJobName reads a job's timer or service name back.
func parseJobName(name string) (Meta, bool) {
	rest := strings.TrimPrefix(name, Prefix)
	sfx := suffix
	if r, ok := strings.CutSuffix(rest, TimerSuffix); ok {
		rest, sfx = r, TimerSuffix
	} else if rest, ok = strings.CutSuffix(rest, suffix); !ok {
		return Meta{}, false
	}
	for i := strings.LastIndex(rest, "-job-"); i > 0; i = strings.LastIndex(rest[:i], "-job-") {
		head, job := rest[:i], rest[i+len("-job-"):]
		j := strings.LastIndexByte(head, '-')
		if j < 0 || bundle.ValidJobName(job) != nil {
			continue
		}
		app, err1 := unescape(head[:j])
		version, err2 := unescape(head[j+1:])
		if err1 != nil || err2 != nil {
			continue
		}
		if again, err := jobUnitName(app, version, job, sfx); err != nil || again != name {
			continue
		}
		return Meta{App: app, Version: version, Stanza: JobStanza(job), Job: job}, true
	}
	return Meta{}, false
}

// Job is a scheduled stanza's pair of units: the service that runs it
// (sandbox, user, folder and environment as a background stanza's) and
// the timer that starts it.
type Job struct {
	Service Unit
	Timer   string
	// TimerProperties are the timer's. It starts Service by name (the
	// same name, .service): systemd 252 cannot set a transient timer's Unit=.
	TimerProperties []sddbus.Property
}

// BuildJob turns a scheduled stanza into its service and timer.
func BuildJob(in Input) (Job, error) {
	s := in.Stanza.Scheduled
	if in.Stanza.Type != bundle.TypeScheduled || s == nil {
		return Job{}, fmt.Errorf("building job for stanza %d of %s: type %q is not scheduled", in.Index, in.App, in.Stanza.Type)
	}
	svc, err := Build(in)
	if err != nil {
		return Job{}, err
	}
	meta := svc.Meta
	timer, err := meta.Timer()
	if err != nil {
		return Job{}, fmt.Errorf("building job %s of %s: %w", s.Name, in.App, err)
	}
	return Job{
		Service: svc,
		Timer:   timer,
		TimerProperties: []sddbus.Property{
			sddbus.PropDescription(Description(meta)),
			// systemd reads TimersCalendar as a(sst) but sets it from
			// a(ss), or from OnCalendar (s) as systemd-run does.
			prop("OnCalendar", s.OnCalendar),
			prop("Persistent", s.Persistent),
			prop("AccuracyUSec", usec(jobAccuracy)),
		},
	}, nil
}

// jobService is what a job's service has beyond a background stanza's
// unit: no restart (a failed run waits for the next), KETER_JOB, and its
// bound on a run.
func jobService(s *bundle.Scheduled) []sddbus.Property {
	ps := []sddbus.Property{prop("Restart", "no")}
	if s.MaxRunTime > 0 {
		ps = append(ps, prop("RuntimeMaxUSec", usec(s.MaxRunTime)))
	}
	return ps
}

// collectMode lets systemd forget an app unit once it stops, but keeps a
// job's service loaded after a failed run: its result is the job's status
// until the next run.
func collectMode(m Meta) sddbus.Property {
	if m.Job != "" {
		return prop("CollectMode", "inactive")
	}
	return prop("CollectMode", "inactive-or-failed")
}

func jobField(m Meta) [][]byte {
	if m.Job == "" {
		return nil
	}
	return [][]byte{[]byte("KETER_JOB=" + m.Job)}
}

// JobState is what systemd says of a job: its timer's next and last
// elapse, its service's state and last run.
type JobState struct {
	Next, LastTrigger time.Time
	Active            string // the service's ActiveState
	Result            string // the service's Result of its last run
	Started, Exited   time.Time
	// ExecMainCode and ExecMainStatus as in Status.
	ExecMainCode, ExecMainStatus int32
}
