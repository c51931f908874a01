package bundle

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// TypeScheduled is our stanza type for a job systemd runs on a calendar
// schedule (a timer), next to Keter's `background`.
const TypeScheduled StanzaType = "scheduled"

// MaxRunTime bounds a scheduled job's max-run-time.
const MaxRunTime = 7 * 24 * time.Hour

// Scheduled is a `scheduled` stanza: a job run by a systemd timer.
type Scheduled struct {
	Exec
	// Name names the job in `keter job run APP NAME`, in its unit names and
	// in KETER_JOB; default scheduled-INDEX.
	Name string `json:"name"`
	// Schedule is as written: systemd's OnCalendar syntax or a 5-field
	// cron line; OnCalendar is what systemd gets.
	Schedule   string `json:"schedule"`
	OnCalendar string `json:"on-calendar"`
	// MaxRunTime stops a run that takes longer (0: no bound).
	MaxRunTime time.Duration `json:"max-run-time,omitempty"`
	// Persistent runs a run missed while the host was down once it is back
	// (systemd's Persistent=).
	Persistent bool    `json:"persistent"`
	Systemd    Systemd `json:"systemd"`
}

// JobName is the default name of the scheduled stanza at index i.
func JobName(i int) string { return "scheduled-" + strconv.Itoa(i) }

var jobName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// ValidJobName checks a job's name: it becomes part of unit names and of a
// URL path.
func ValidJobName(n string) error {
	if !jobName.MatchString(n) {
		return invalid("job name %s must be 1 to 63 of [a-z0-9_-], starting with a letter or digit", describe(n))
	}
	return nil
}

func parseScheduled(o *obj, i int) *Scheduled {
	s := &Scheduled{Exec: o.exec(), Name: JobName(i), Systemd: o.systemd(false)}
	if n, ok := o.str("name"); ok {
		if err := ValidJobName(n); err != nil {
			o.w.fail(join(o.path, "name"), err)
		}
		s.Name = n
	}
	if v, ok := o.requiredStr("schedule"); ok {
		cal, err := OnCalendar(v)
		if err != nil {
			o.w.fail(join(o.path, "schedule"), err)
		}
		s.Schedule, s.OnCalendar = v, cal
	}
	s.MaxRunTime, _ = o.duration("max-run-time", MaxRunTime)
	s.Persistent = o.boolean("persistent", false)
	return s
}

// uniqueJobs refuses two scheduled stanzas with one name: `keter job run`
// and the unit names need each to be one job.
func uniqueJobs(w *walker, c *AppConfig) {
	seen := map[string]int{}
	for i, s := range c.Stanzas {
		if s.Scheduled == nil {
			continue
		}
		if j, ok := seen[s.Scheduled.Name]; ok {
			w.failf(join(index("stanzas", i), "name"), "job %s is also stanzas[%d]'s name; give each scheduled stanza its own name", describe(s.Scheduled.Name), j)
			continue
		}
		seen[s.Scheduled.Name] = i
	}
}

// calendarChars are the characters systemd's OnCalendar syntax uses
// (weekday names, dates, times, ranges, lists, repetitions, time zones).
var calendarChars = regexp.MustCompile(`^[A-Za-z0-9*:/,.~_+ -]+$`)

var calendarWords = map[string]bool{
	"minutely": true, "hourly": true, "daily": true, "monthly": true, "weekly": true,
	"yearly": true, "annually": true, "quarterly": true, "semiannually": true,
}

// cronField is one field of a cron line: numbers, *, lists, ranges, steps.
var cronField = regexp.MustCompile(`^[0-9*,/-]+$`)

// OnCalendar turns a schedule into systemd's OnCalendar syntax: a 5-field
// cron line is converted, anything else is checked loosely here (the
// characters and shape systemd's syntax uses) and exactly by systemd at
// deploy time.
func OnCalendar(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", invalid("schedule is empty")
	}
	if len(s) > 256 {
		return "", invalid("schedule %s is longer than 256 characters", describe(s))
	}
	f := strings.Fields(s)
	if len(f) == 5 && allMatch(f, cronField) {
		return cronToCalendar(f)
	}
	if !calendarChars.MatchString(s) {
		return "", invalid("schedule %s: use systemd's OnCalendar syntax (e.g. \"*-*-* 03:00:00\", \"Mon..Fri 09:00\", \"hourly\") or a 5-field cron line (\"*/5 * * * *\")", describe(s))
	}
	if len(f) == 1 && strings.IndexFunc(s, func(r rune) bool { return r >= '0' && r <= '9' || r == '*' }) < 0 && !calendarWords[strings.ToLower(s)] {
		return "", invalid("schedule %s is not a calendar word systemd knows (minutely, hourly, daily, weekly, monthly, quarterly, semiannually, yearly)", describe(s))
	}
	return strings.Join(f, " "), nil
}

func allMatch(f []string, re *regexp.Regexp) bool {
	for _, x := range f {
		if !re.MatchString(x) {
			return false
		}
	}
	return true
}

var cronNames = [5]string{"minute", "hour", "day of month", "month", "day of week"}
var cronBounds = [5][2]int{{0, 59}, {0, 23}, {1, 31}, {1, 12}, {0, 7}}
var weekdays = [8]string{"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}

// cronToCalendar converts "m h dom mon dow". cron runs when either the day
// of month or the weekday matches if both are restricted; systemd wants
// both, so that case is refused rather than changed in meaning.
func cronToCalendar(f []string) (string, error) {
	if f[2] != "*" && f[4] != "*" {
		return "", invalid("cron line %s restricts both the day of month and the weekday, which cron ORs and systemd ANDs: write it in OnCalendar syntax or as two jobs", describe(strings.Join(f, " ")))
	}
	var out [5]string
	for i, x := range f {
		var parts []string
		for _, item := range strings.Split(x, ",") {
			p, err := cronItem(i, item)
			if err != nil {
				return "", fmt.Errorf("cron line %s, %s field: %w", describe(strings.Join(f, " ")), cronNames[i], err)
			}
			parts = append(parts, p)
		}
		out[i] = strings.Join(parts, ",")
	}
	cal := "*-" + out[3] + "-" + out[2] + " " + out[1] + ":" + out[0] + ":00"
	if out[4] != "*" {
		cal = out[4] + " " + cal
	}
	return cal, nil
}

func cronItem(field int, item string) (string, error) {
	lo, hi := cronBounds[field][0], cronBounds[field][1]
	num := func(s string) (int, error) {
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			return 0, invalid("%s is not a number from %d to %d", describe(s), lo, hi)
		}
		return n, nil
	}
	name := func(n int) string {
		if field == 4 {
			return weekdays[n]
		}
		return strconv.Itoa(n)
	}
	rng, step, hasStep := strings.Cut(item, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n < 1 || n > hi {
			return "", invalid("step %s is not a number from 1 to %d", describe(step), hi)
		}
		if field == 4 {
			return "", invalid("steps in the day of week are not supported: list the days")
		}
		switch {
		case rng == "*":
			return strconv.Itoa(lo) + "/" + step, nil
		case !strings.Contains(rng, "-"):
			a, err := num(rng)
			if err != nil {
				return "", err
			}
			return strconv.Itoa(a) + "/" + step, nil
		}
		return "", invalid("a range with a step (%s) is not supported: use OnCalendar syntax", describe(item))
	}
	if rng == "*" {
		return "*", nil
	}
	if a, b, ok := strings.Cut(rng, "-"); ok {
		x, err := num(a)
		if err != nil {
			return "", err
		}
		y, err := num(b)
		if err != nil {
			return "", err
		}
		if y < x {
			return "", invalid("range %s runs backwards", describe(rng))
		}
		return name(x) + ".." + name(y), nil
	}
	n, err := num(rng)
	if err != nil {
		return "", err
	}
	return name(n), nil
}
