package unitgen

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
)

func jobStanza(mut func(*bundle.Scheduled)) bundle.Stanza {
	s := &bundle.Scheduled{
		Exec:       bundle.Exec{Path: "bin/report", Args: []string{"--all"}, Env: map[string]string{"TOKEN": "t-secret"}},
		Name:       "nightly",
		Schedule:   "0 3 * * *",
		OnCalendar: "*-*-* 3:0:00",
	}
	if mut != nil {
		mut(s)
	}
	return bundle.Stanza{Type: bundle.TypeScheduled, Scheduled: s}
}

func TestBuildJobGolden(t *testing.T) {
	tests := []struct {
		name string
		in   Input
	}{
		{"job-default", Input{App: "demo", Version: "1", Index: 2, Stanza: jobStanza(nil),
			Dir: "/opt/keter/temp/demo-1", Global: global(), EnvDir: "/opt/keter/etc/env"}},
		{"job-persistent-max-run-time", Input{App: "shop", Version: "7", Index: 0,
			Stanza: jobStanza(func(s *bundle.Scheduled) {
				s.Name, s.OnCalendar, s.Persistent, s.MaxRunTime = "every-2s", "*-*-* *:*:0/2", true, 90*time.Second
				s.Systemd = bundle.Systemd{MemoryMax: 64 << 20}
			}),
			Dir: "/opt/keter/temp/shop-7", Global: global(), EnvDir: "/opt/keter/etc/env"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j, err := BuildJob(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("service: " + j.Service.Name + "\n")
			b.WriteString("env-file: " + j.Service.EnvFile + "\n")
			b.WriteString("--- service properties\n" + Render(j.Service.Properties))
			b.WriteString("--- secrets\n" + string(j.Service.Secrets))
			b.WriteString("--- timer " + j.Timer + "\n" + Render(j.TimerProperties))
			golden := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create): %v", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("job differs from %s (run with -update if intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestBuildJobProperties checks what a job's units must have, whatever
// the golden files say.
func TestBuildJobProperties(t *testing.T) {
	in := Input{App: "demo", Version: "1", Index: 0, Dir: "/opt/keter/temp/demo-1", Global: global(), EnvDir: "/opt/keter/etc/env",
		Stanza: jobStanza(func(s *bundle.Scheduled) { s.MaxRunTime = time.Minute; s.Persistent = true })}
	j, err := BuildJob(in)
	if err != nil {
		t.Fatal(err)
	}
	bg, err := Build(Input{App: "demo", Version: "1", Index: 0, Dir: in.Dir, Global: global(), EnvDir: in.EnvDir, Stanza: bgStanza(0, 0)})
	if err != nil {
		t.Fatal(err)
	}
	svc := props(j.Service.Properties)
	for _, tc := range []struct{ name, want string }{
		{"Type", `(s) "exec"`},
		{"Restart", `(s) "no"`},
		{"RuntimeMaxUSec", "(t) 60000000"},
		{"CollectMode", `(s) "inactive"`},
		{"Environment", `(as) ["KETER_JOB=nightly"]`},
	} {
		if got := svc[tc.name]; got != tc.want {
			t.Errorf("service %s = %q, want %q", tc.name, got, tc.want)
		}
	}
	if !strings.Contains(svc["LogExtraFields"], "KETER_JOB=nightly") || !strings.Contains(svc["LogExtraFields"], "KETER_STANZA=job-nightly") {
		t.Errorf("LogExtraFields = %s", svc["LogExtraFields"])
	}
	// The sandbox, user and folder are a background stanza's.
	bgp := props(bg.Properties)
	for _, k := range []string{"User", "DynamicUser", "WorkingDirectory", "ProtectSystem", "SystemCallFilter", "TemporaryFileSystem", "BindPaths", "StateDirectory", "Slice"} {
		if svc[k] == "" || svc[k] != bgp[k] {
			t.Errorf("service %s = %q, a background unit's is %q", k, svc[k], bgp[k])
		}
	}
	tm := props(j.TimerProperties)
	for _, tc := range []struct{ name, want string }{
		{"Persistent", "(b) true"},
		{"AccuracyUSec", "(t) 1000000"},
		{"OnCalendar", `(s) "*-*-* 3:0:00"`},
	} {
		if got := tm[tc.name]; got != tc.want {
			t.Errorf("timer %s = %q, want %q", tc.name, got, tc.want)
		}
	}
	if _, ok := tm["Unit"]; ok {
		t.Error("timer sets Unit=, which systemd 252 refuses for a transient timer")
	}
	if j.Timer != "keter-app-demo-1-job-nightly.timer" || j.Service.Name != "keter-app-demo-1-job-nightly.service" {
		t.Errorf("names %s, %s", j.Timer, j.Service.Name)
	}
	if _, err := BuildJob(Input{App: "demo", Version: "1", Stanza: bgStanza(0, 0), Dir: in.Dir}); err == nil {
		t.Error("BuildJob took a background stanza")
	}
}

func props(ps []sddbus.Property) map[string]string {
	out := map[string]string{}
	for _, p := range ps {
		out[p.Name] = strings.TrimSpace(Render([]sddbus.Property{p})[len(p.Name)+1:])
	}
	return out
}

func TestJobNames(t *testing.T) {
	for _, tc := range []struct {
		meta          Meta
		service, tmr  string
		readsBackName bool
	}{
		{Meta{App: "shop", Version: "v1", Stanza: "job-nightly", Job: "nightly"}, "keter-app-shop-v1-job-nightly.service", "keter-app-shop-v1-job-nightly.timer", true},
		{Meta{App: "my-app", Version: "v1", Stanza: "job-a-b", Job: "a-b"}, "keter-app-my-app-v1-job-a-b.service", "keter-app-my-app-v1-job-a-b.timer", true},
		{Meta{App: "x y", Version: "v2", Stanza: "job-scheduled-0", Job: "scheduled-0"}, `keter-app-x\x20y-v2-job-scheduled-0.service`, `keter-app-x\x20y-v2-job-scheduled-0.timer`, true},
	} {
		t.Run(tc.service, func(t *testing.T) {
			svc, err := tc.meta.Unit()
			if err != nil || svc != tc.service {
				t.Fatalf("Unit() = %q, %v", svc, err)
			}
			tmr, err := tc.meta.Timer()
			if err != nil || tmr != tc.tmr {
				t.Fatalf("Timer() = %q, %v", tmr, err)
			}
			for _, n := range []string{svc, tmr} {
				m, ok := ParseUnitName(n)
				if !ok || m != tc.meta {
					t.Errorf("ParseUnitName(%q) = %+v, %v", n, m, ok)
				}
			}
			m, ok := ParseMeta(Description(tc.meta))
			if !ok || m != tc.meta {
				t.Errorf("ParseMeta(%q) = %+v, %v", Description(tc.meta), m, ok)
			}
		})
	}
	if _, err := (Meta{App: "a", Version: "1", Job: "Bad Name"}).Unit(); err == nil {
		t.Error("a job name with a space made a unit name")
	}
	// A webapp's unit does not read back as a job.
	if m, ok := ParseUnitName("keter-app-shop-v1-web0.service"); !ok || m.Job != "" {
		t.Errorf("web0: %+v %v", m, ok)
	}
}
