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

func releaseInput() Input {
	return Input{App: "shop", Version: "7", Index: 1,
		Stanza: webStanza(func(w *bundle.WebApp) {
			w.PortEnvVars = []string{"HTTP_PORT"}
			w.Env = map[string]string{"DATABASE_URL": "postgres://db/shop"}
			w.Systemd = bundle.Systemd{MemoryMax: 256 << 20, MemoryDenyWriteExecute: ptr(true)}
		}),
		Dir: "/opt/keter/temp/shop-7", Port: 28120, Global: global(), EnvDir: "/opt/keter/etc/env",
		PluginEnv: map[string]string{"PGDATABASE": "shop"}, StopHook: []string{"/hook", "stop"}, Instance: 2}
}

func TestReleaseGolden(t *testing.T) {
	rel := &bundle.Release{Exec: "bin/migrate", Args: []string{"up", "--to", "$LATEST"}, Timeout: 90 * time.Second}
	bg := Input{App: "demo", Version: "1", Index: 0, Stanza: bgStanza(-1, 5), Dir: "/opt/keter/temp/demo-1", Global: global(), EnvDir: "/opt/keter/etc/env"}
	for _, tt := range []struct {
		name string
		in   Input
	}{
		{"release-webapp", releaseInput()},
		{"release-background", bg},
	} {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Release(tt.in, rel)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("name: " + u.Name + "\nenv-file: " + u.EnvFile + "\n")
			b.WriteString("--- properties\n" + Render(u.Properties) + "--- secrets\n" + string(u.Secrets))
			if u.Launcher != "" {
				b.WriteString("--- launcher " + u.Launcher + "\n" + string(u.LauncherScript))
			}
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
				t.Errorf("unit differs from %s (run with -update if intended)\n--- got\n%s\n--- want\n%s", golden, got, want)
			}
		})
	}
}

// TestReleaseBorrowsStanza: the step runs as the stanza it borrows from
// (user, sandbox, folder, limits, environment) minus PORT, restarts and
// the stop hook, as a oneshot bounded by its timeout.
func TestReleaseBorrowsStanza(t *testing.T) {
	in := releaseInput()
	stanza, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	rel := &bundle.Release{Exec: "bin/migrate", Args: []string{"up"}, Timeout: time.Minute}
	u, err := Release(in, rel)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "keter-app-shop-7-release.service" || u.Meta.Stanza != ReleaseStanza || u.Meta.Instance != 0 {
		t.Fatalf("name %s, meta %+v", u.Name, u.Meta)
	}
	if m, ok := ParseUnitName(u.Name); !ok || m != u.Meta {
		t.Fatalf("ParseUnitName(%s) = %+v, %v; want the meta back", u.Name, m, ok)
	}
	if m, ok := ParseMeta(Description(u.Meta)); !ok || m != u.Meta {
		t.Fatalf("ParseMeta = %+v, %v", m, ok)
	}
	props := func(u Unit) map[string]string {
		out := map[string]string{}
		for _, p := range u.Properties {
			out[p.Name] += Render([]sddbus.Property{p})
		}
		return out
	}
	got, base := props(u), props(stanza)
	// What differs, on purpose.
	differs := map[string]string{
		"Type":             `Type (s) "oneshot"` + "\n",
		"RemainAfterExit":  "RemainAfterExit (b) false\n",
		"CollectMode":      `CollectMode (s) "inactive"` + "\n",
		"TimeoutStartUSec": "TimeoutStartUSec (t) 60000000\n",
		"Restart":          `Restart (s) "no"` + "\n",
		"ExecStart":        `ExecStart (a(sasb)) [{Path: "/opt/keter/temp/shop-7/bin/migrate", Args: ["/opt/keter/temp/shop-7/bin/migrate", "up"], Ignore: false}]` + "\n",
	}
	for name, want := range differs {
		if got[name] != want {
			t.Errorf("%s = %q, want %q", name, got[name], want)
		}
	}
	for _, name := range []string{"ExecStopPostEx", "RestartUSec", "StartLimitBurst", "StartLimitIntervalUSec"} {
		if got[name] != "" {
			t.Errorf("release unit has %s", strings.TrimSpace(got[name]))
		}
	}
	// Everything else of the sandbox is the stanza's own.
	for _, name := range []string{"User", "DynamicUser", "WorkingDirectory", "StateDirectory", "BindPaths", "TemporaryFileSystem",
		"ProtectSystem", "PrivateUsers", "SystemCallFilter", "MemoryDenyWriteExecute", "MemoryMax", "Slice", "UMask"} {
		if got[name] == "" || got[name] != base[name] {
			t.Errorf("%s: release %q, stanza %q", name, got[name], base[name])
		}
	}
	public, secret := env(t, u)
	for _, k := range []string{"PORT", "HTTP_PORT"} {
		if _, ok := public[k]; ok {
			t.Errorf("release step gets %s", k)
		}
	}
	if public["APPROOT"] != "http://demo.example.com" {
		t.Errorf("APPROOT = %q", public["APPROOT"])
	}
	for k, v := range map[string]string{"DATABASE_URL": "postgres://db/shop", "PGDATABASE": "shop", "GLOBAL_TOKEN": "g-secret"} {
		if secret[k] != v {
			t.Errorf("%s = %q, want %q", k, secret[k], v)
		}
	}
	if u.EnvFile != "/opt/keter/etc/env/keter-app-shop-7-release.env" {
		t.Errorf("EnvFile = %s", u.EnvFile)
	}
}

func TestReleaseRefuses(t *testing.T) {
	in := releaseInput()
	if _, err := Release(in, nil); err == nil {
		t.Error("no release step: no error")
	}
	if _, err := Release(in, &bundle.Release{Exec: "bin/m"}); err == nil || !strings.Contains(err.Error(), "timeout 0s is not positive") {
		t.Errorf("zero timeout: %v", err)
	}
	if _, err := Release(in, &bundle.Release{Timeout: time.Second}); err == nil || !strings.Contains(err.Error(), "exec is empty") {
		t.Errorf("empty exec: %v", err)
	}
}
