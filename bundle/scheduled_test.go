package bundle

import (
	"strings"
	"testing"
	"time"
)

func TestParseScheduled(t *testing.T) {
	c, err := Parse([]byte(`
stanzas:
  - type: scheduled
    exec: ../bin/report
    args: [--daily]
    env: {MODE: nightly}
    forward-env: [TZ]
    schedule: "*-*-* 03:00:00"
    max-run-time: 10m
    persistent: true
    name: nightly-report
  - type: scheduled
    exec: ../bin/tick
    schedule: "*/5 * * * *"
`))
	if err != nil {
		t.Fatal(err)
	}
	a := c.Stanzas[0].Scheduled
	if a == nil || a.Path != "bin/report" || a.Args[0] != "--daily" || a.Env["MODE"] != "nightly" || a.ForwardEnv[0] != "TZ" {
		t.Fatalf("first job: %+v", a)
	}
	if a.Name != "nightly-report" || a.OnCalendar != "*-*-* 03:00:00" || a.MaxRunTime != 10*time.Minute || !a.Persistent {
		t.Errorf("first job: %+v", a)
	}
	b := c.Stanzas[1].Scheduled
	if b.Name != "scheduled-1" || b.Schedule != "*/5 * * * *" || b.OnCalendar != "*-*-* *:0/5:00" || b.Persistent || b.MaxRunTime != 0 {
		t.Errorf("second job: %+v", b)
	}
}

func TestParseScheduledErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"no schedule", `{type: scheduled, exec: ../a}`, "stanzas[0].schedule: invalid value: required"},
		{"bad characters", `{type: scheduled, exec: ../a, schedule: "daily; rm -rf /"}`, "stanzas[0].schedule: invalid value: schedule"},
		{"unknown word", `{type: scheduled, exec: ../a, schedule: fortnightly}`, "not a calendar word"},
		{"bad name", `{type: scheduled, exec: ../a, schedule: daily, name: "Nightly Job"}`, "stanzas[0].name: invalid value: job name"},
		{"bad duration", `{type: scheduled, exec: ../a, schedule: daily, max-run-time: 600}`, "stanzas[0].max-run-time: invalid value: must be a duration"},
		{"cron dom and dow", `{type: scheduled, exec: ../a, schedule: "0 3 1 * 1"}`, "cron ORs and systemd ANDs"},
		{"cron out of range", `{type: scheduled, exec: ../a, schedule: "61 * * * *"}`, "minute field"},
		{"no exec", `{type: scheduled, schedule: daily}`, "stanzas[0].exec: invalid value: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte("stanzas:\n  - " + tc.yaml + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
	t.Run("two jobs one name", func(t *testing.T) {
		_, err := Parse([]byte("stanzas:\n  - {type: scheduled, exec: ../a, schedule: daily, name: x}\n  - {type: scheduled, exec: ../b, schedule: hourly, name: x}\n"))
		if err == nil || !strings.Contains(err.Error(), `stanzas[1].name: invalid value: job "x" is also stanzas[0]'s name`) {
			t.Fatalf("got %v", err)
		}
	})
}

func TestOnCalendar(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"*-*-* *:*:0/2", "*-*-* *:*:0/2"},
		{"  Mon..Fri   09:00 ", "Mon..Fri 09:00"},
		{"hourly", "hourly"},
		{"0 3 * * *", "*-*-* 3:0:00"},
		{"*/15 * * * *", "*-*-* *:0/15:00"},
		{"0 9 * * 1-5", "Mon..Fri *-*-* 9:0:00"},
		{"0 0 1,15 * *", "*-*-1,15 0:0:00"},
		{"30 2 * 1-6/2 *", ""},
		{"0 0 * * 0,7", "Sun,Sun *-*-* 0:0:00"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := OnCalendar(tc.in)
			if tc.want == "" {
				if err == nil {
					t.Fatalf("got %q, want an error", got)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}
