package unitgen

import (
	"strconv"
	"strings"
)

// Meta says which app, version and stanza a unit runs, and which of the
// stanza's instances when it has several.
type Meta struct {
	App, Version, Stanza string
	// Instance is 1..N for a stanza with N > 1 instances (its unit name
	// ends in STANZA.N); 0 for a stanza's only unit.
	Instance int
	// Job is a scheduled stanza's job name: its units are
	// ...-job-JOB.service and ...-job-JOB.timer.
	Job string
}

// InstanceNumber is 1 for a stanza's only unit, else its Instance.
func (m Meta) InstanceNumber() int { return max(1, m.Instance) }

// Unit is the unit name that runs m: ...-web0.service, or ...-web0.2.service
// for instance 2.
func (m Meta) Unit() (string, error) {
	if m.Job != "" {
		return jobUnitName(m.App, m.Version, m.Job, suffix)
	}
	return unitName(m.App, m.Version, m.Stanza, m.Instance)
}

// Status is a unit's state as systemd reports it.
type Status struct {
	Name                  string
	Meta                  Meta
	ActiveState, SubState string
	Result                string // the service's Result, e.g. "success", "exit-code", "start-limit-hit"
	MainPID               uint32
	NRestarts             uint32
	// ExecMainCode and ExecMainStatus describe how the last main process
	// ended, as in waitid(2): code 1 (CLD_EXITED) with its exit status,
	// 2 (CLD_KILLED) or 3 (CLD_DUMPED) with the signal; 0 while one runs.
	ExecMainCode, ExecMainStatus int32
	Usage                        Usage // filled by the dbus package's List
}

// Exit codes of Status.ExecMainCode.
const (
	CodeExited = 1 // ExecMainStatus is the exit status
	CodeKilled = 2 // ExecMainStatus is the signal
	CodeDumped = 3 // killed by the signal in ExecMainStatus, core dumped
)

const descPrefix = "keter "

// Description is the unit Description that carries m (see ParseMeta).
func Description(m Meta) string {
	d := descPrefix + "app=" + quote(m.App) + " version=" + quote(m.Version) + " stanza=" + quote(m.Stanza)
	if m.Instance > 0 {
		d += " instance=" + strconv.Itoa(m.Instance)
	}
	if m.Job != "" {
		d += " job=" + quote(m.Job)
	}
	return d
}

func quote(s string) string {
	// Quote leaves printable text alone, so this catches everything else.
	if s == "" || strings.ContainsAny(s, " \"\\") || strconv.Quote(s) != `"`+s+`"` {
		return strconv.Quote(s)
	}
	return s
}

// ParseMeta reads back a Description made by Description. It reports false
// for descriptions keter did not write.
func ParseMeta(description string) (Meta, bool) {
	rest, ok := strings.CutPrefix(description, descPrefix)
	if !ok {
		return Meta{}, false
	}
	var m Meta
	for _, f := range []struct {
		key string
		dst *string
	}{{"app=", &m.App}, {"version=", &m.Version}, {"stanza=", &m.Stanza}} {
		if rest, ok = strings.CutPrefix(rest, f.key); !ok {
			return Meta{}, false
		}
		var v string
		if strings.HasPrefix(rest, `"`) {
			q, err := strconv.QuotedPrefix(rest)
			if err != nil {
				return Meta{}, false
			}
			if v, err = strconv.Unquote(q); err != nil {
				return Meta{}, false
			}
			rest = rest[len(q):]
		} else {
			v, rest, _ = strings.Cut(rest, " ")
			rest = " " + rest
		}
		if v == "" {
			return Meta{}, false
		}
		*f.dst = v
		if f.key != "stanza=" {
			if rest, ok = strings.CutPrefix(rest, " "); !ok {
				return Meta{}, false
			}
		}
	}
	if n, ok := strings.CutPrefix(rest, " instance="); ok {
		i, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil || i < 1 {
			return Meta{}, false
		}
		m.Instance, rest = i, ""
	}
	if j, ok := strings.CutPrefix(rest, " job="); ok {
		v, err := strconv.Unquote(j)
		if err != nil {
			v = strings.TrimSpace(j)
		}
		if v == "" || strings.ContainsAny(v, " \"") {
			return Meta{}, false
		}
		m.Job, rest = v, ""
	}
	if strings.TrimSpace(rest) != "" {
		return Meta{}, false
	}
	return m, true
}
