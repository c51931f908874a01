package unitgen

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

func global() *config.Config {
	return &config.Config{Root: "/opt/keter", ExternalHTTPPort: 80, ExternalHTTPSPort: 443,
		Env: map[string]string{"GLOBAL_TOKEN": "g-secret"}}
}

func webStanza(mut func(*bundle.WebApp)) bundle.Stanza {
	w := &bundle.WebApp{
		Exec:  bundle.Exec{Path: "bin/app", Args: []string{"--listen", "$PORT"}},
		Hosts: []string{"demo.example.com", "www.demo.example.com"},
	}
	if mut != nil {
		mut(w)
	}
	return bundle.Stanza{Type: bundle.TypeWebApp, WebApp: w}
}

func bgStanza(count, delay int) bundle.Stanza {
	return bundle.Stanza{Type: bundle.TypeBackground, Background: &bundle.Background{
		Exec:                bundle.Exec{Path: "/usr/bin/worker", Env: map[string]string{"QUEUE": "jobs"}},
		RestartCount:        count,
		RestartDelaySeconds: delay,
	}}
}

func TestBuildGolden(t *testing.T) {
	sslGlobal := global()
	sslGlobal.ExternalHTTPSPort = 8443
	setuid := global()
	setuid.Setuid = "www-data"
	tests := []struct {
		name string
		in   Input
	}{
		{"webapp-default", Input{App: "demo", Version: "1", Index: 0, Stanza: webStanza(nil),
			Dir: "/opt/keter/temp/demo-1", Port: 43124, Global: global(), EnvDir: "/opt/keter/etc/env"}},
		{"webapp-ssl-limits-jit", Input{App: "shop", Version: "7", Index: 2,
			Stanza: webStanza(func(w *bundle.WebApp) {
				w.SSL.Enabled = true
				w.PortEnvVars = []string{"YESOD_PORT", "HTTP_PORT"}
				w.Env = map[string]string{"API_KEY": `s3cr"et $x \y` + "`z`\nline2", "HTTP_PORT": "9999"}
				w.ForwardEnv = []string{"AWS_REGION", "NOT_SET"}
				w.Systemd = bundle.Systemd{MemoryMax: 512 << 20, CPUQuotaPercent: 150, TasksMax: 64,
					MemoryDenyWriteExecute: ptr(false), StopTimeoutSec: 3, RestartDelaySec: 10}
			}),
			Dir: "/opt/keter/temp/shop-7", Port: 28120, Global: sslGlobal, EnvDir: "/opt/keter/etc/env",
			PluginEnv: map[string]string{"PGHOST": "localhost", "PGPASS": "pw"},
			LookupEnv: func(k string) (string, bool) {
				if k == "AWS_REGION" {
					return "eu-west-1", true
				}
				return "", false
			}}},
		{"webapp-instance-2", Input{App: "demo", Version: "1", Index: 0, Stanza: webStanza(func(w *bundle.WebApp) { w.Instances = 3 }),
			Dir: "/opt/keter/temp/demo-1", Port: 43125, Global: global(), EnvDir: "/opt/keter/etc/env", Instance: 2}},
		{"webapp-setuid", Input{App: "legacy.site", Version: "3", Index: 0, Stanza: webStanza(nil),
			Dir: "/opt/keter/temp/legacy.site-3", Port: 40001, Global: setuid, EnvDir: "/opt/keter/etc/env"}},
		{"background-unlimited", Input{App: "demo", Version: "1", Index: 1, Stanza: bgStanza(-1, 5),
			Dir: "/opt/keter/temp/demo-1", Global: global(), EnvDir: "/opt/keter/etc/env"}},
		{"background-count-3", Input{App: "demo", Version: "1", Index: 2, Stanza: bgStanza(3, 0),
			Dir: "/opt/keter/temp/demo-1", Global: &config.Config{}, EnvDir: "/opt/keter/etc/env"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Build(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			var b strings.Builder
			b.WriteString("name: " + u.Name + "\n")
			b.WriteString("env-file: " + u.EnvFile + "\n")
			b.WriteString("--- properties\n" + Render(u.Properties))
			b.WriteString("--- secrets\n" + string(u.Secrets))
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

// env reads the final environment back from a unit: public variables from
// Environment=, secret ones from the rendered file.
func env(t *testing.T, u Unit) (public, secret map[string]string) {
	t.Helper()
	public, secret = map[string]string{}, map[string]string{}
	for _, p := range u.Properties {
		if p.Name == "Environment" {
			for _, kv := range p.Value.Value().([]string) {
				k, v, _ := strings.Cut(kv, "=")
				public[k] = v
			}
		}
	}
	vars, err := parseEnvFile(string(u.Secrets))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vars {
		secret[k] = v
	}
	return public, secret
}

func TestBuildEnvironmentPrecedence(t *testing.T) {
	lookup := func(k string) (string, bool) {
		v, ok := map[string]string{"FWD": "from-keter", "SHARED": "fwd", "EMPTY": ""}[k]
		return v, ok
	}
	tests := []struct {
		name       string
		stanza     bundle.Stanza
		global     map[string]string
		plugin     map[string]string
		operator   map[string]string
		wantPublic map[string]string
		wantSecret map[string]string
	}{
		{
			name:       "only public",
			stanza:     webStanza(func(w *bundle.WebApp) { w.PortEnvVars = []string{"YESOD_PORT"} }),
			wantPublic: map[string]string{"PORT": "4000", "YESOD_PORT": "4000", "APPROOT": "http://demo.example.com"},
			wantSecret: map[string]string{},
		},
		{
			name: "each layer beats the one below",
			stanza: webStanza(func(w *bundle.WebApp) {
				w.Env = map[string]string{"SHARED": "stanza", "PORT": "1"}
				w.ForwardEnv = []string{"FWD", "SHARED", "MISSING", "EMPTY"}
			}),
			global:     map[string]string{"SHARED": "global", "G": "g", "APPROOT": "http://override", "P": "global-p"},
			plugin:     map[string]string{"SHARED": "plugin", "P": "plugin-p", "PGPASS": "pw"},
			wantPublic: map[string]string{},
			wantSecret: map[string]string{"SHARED": "stanza", "PORT": "1", "FWD": "from-keter", "EMPTY": "",
				"G": "g", "APPROOT": "http://override", "P": "plugin-p", "PGPASS": "pw"},
		},
		{
			name:       "forward-env beats plugin and global",
			stanza:     webStanza(func(w *bundle.WebApp) { w.ForwardEnv = []string{"SHARED"} }),
			global:     map[string]string{"SHARED": "global"},
			plugin:     map[string]string{"SHARED": "plugin"},
			wantPublic: map[string]string{"PORT": "4000", "APPROOT": "http://demo.example.com"},
			wantSecret: map[string]string{"SHARED": "fwd"},
		},
		{
			name: "operator beats every layer and is never public",
			stanza: webStanza(func(w *bundle.WebApp) {
				w.Env = map[string]string{"SHARED": "stanza", "S": "s"}
				w.ForwardEnv = []string{"SHARED"}
			}),
			global:     map[string]string{"SHARED": "global", "G": "g"},
			plugin:     map[string]string{"SHARED": "plugin", "PGPASS": "pw"},
			operator:   map[string]string{"SHARED": "operator", "PGPASS": "op-pw", "NEW": "n\nline"},
			wantPublic: map[string]string{"PORT": "4000", "APPROOT": "http://demo.example.com"},
			wantSecret: map[string]string{"SHARED": "operator", "S": "s", "G": "g", "PGPASS": "op-pw", "NEW": "n\nline"},
		},
		{
			name:       "operator reaches background stanzas",
			stanza:     bgStanza(-1, 5),
			operator:   map[string]string{"QUEUE": "urgent"},
			wantPublic: map[string]string{},
			wantSecret: map[string]string{"QUEUE": "urgent"},
		},
		{
			name:       "background gets no PORT or APPROOT",
			stanza:     bgStanza(-1, 5),
			global:     map[string]string{"G": "g"},
			wantPublic: map[string]string{},
			wantSecret: map[string]string{"G": "g", "QUEUE": "jobs"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := global()
			g.Env = tt.global
			u, err := Build(Input{App: "demo", Version: "1", Stanza: tt.stanza, Dir: "/srv/demo", Port: 4000,
				Global: g, PluginEnv: tt.plugin, LookupEnv: lookup, EnvDir: "/etc/keter/env", Operator: tt.operator})
			if err != nil {
				t.Fatal(err)
			}
			pub, sec := env(t, u)
			if !equalMaps(pub, tt.wantPublic) {
				t.Errorf("Environment = %v, want %v", pub, tt.wantPublic)
			}
			if !equalMaps(sec, tt.wantSecret) {
				t.Errorf("secrets = %v, want %v", sec, tt.wantSecret)
			}
			for k := range pub {
				if _, dup := sec[k]; dup {
					t.Errorf("%s is in both Environment and the env file", k)
				}
			}
			if (len(tt.wantSecret) == 0) != (u.EnvFile == "") {
				t.Errorf("EnvFile = %q with %d secrets", u.EnvFile, len(tt.wantSecret))
			}
		})
	}
}

func TestAppRoot(t *testing.T) {
	tests := []struct {
		ssl         bool
		http, https int
		want        string
	}{
		{false, 80, 443, "http://h.example"},
		{true, 80, 443, "https://h.example"},
		{false, 8080, 443, "http://h.example:8080"},
		{true, 8080, 8443, "https://h.example:8443"},
		{true, 8080, 443, "https://h.example"},
	}
	for _, tt := range tests {
		g := &config.Config{ExternalHTTPPort: tt.http, ExternalHTTPSPort: tt.https}
		if got := AppRoot("h.example", tt.ssl, g); got != tt.want {
			t.Errorf("AppRoot(ssl=%v, %d, %d) = %q, want %q", tt.ssl, tt.http, tt.https, got, tt.want)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	ok := Input{App: "demo", Version: "1", Stanza: webStanza(nil), Dir: "/srv/demo", Port: 4000,
		Global: global(), EnvDir: "/etc/keter/env"}
	tests := []struct {
		name string
		mut  func(*Input)
		want []string
	}{
		{"static stanza", func(in *Input) { in.Stanza = bundle.Stanza{Type: bundle.TypeStaticFiles} }, []string{"does not run a process"}},
		{"bad port and relative dir", func(in *Input) { in.Port = 0; in.Dir = "srv" }, []string{"port 0", `"srv" is not absolute`}},
		{"bad app name", func(in *Input) { in.App = "a/b" }, []string{`app name "a/b"`}},
		{"bad env name", func(in *Input) {
			in.Stanza = webStanza(func(w *bundle.WebApp) { w.Env = map[string]string{"1X": "v", "A-B": "v"} })
		}, []string{`"1X"`, `"A-B"`}},
		{"NUL in value", func(in *Input) { in.PluginEnv = map[string]string{"X": "a\x00b"} }, []string{"NUL"}},
		{"relative env dir", func(in *Input) { in.EnvDir = "env" }, []string{`env folder "env"`}},
		{"empty exec", func(in *Input) { in.Stanza = webStanza(func(w *bundle.WebApp) { w.Path = "" }) }, []string{"exec is empty"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := ok
			tt.mut(&in)
			_, err := Build(in)
			if err == nil {
				t.Fatal("Build succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	if _, err := Build(ok); err != nil {
		t.Errorf("baseline input refused: %v", err)
	}
}

func TestBuildRestartPolicy(t *testing.T) {
	get := func(u Unit, name string) any {
		for _, p := range u.Properties {
			if p.Name == name {
				return p.Value.Value()
			}
		}
		return nil
	}
	tests := []struct {
		name                       string
		stanza                     bundle.Stanza
		restart                    string
		burst, interval, restartUS any
	}{
		{"webapp", webStanza(nil), "always", uint32(100), uint64(60_000_000), uint64(100_000)},
		{"webapp slow restart", webStanza(func(w *bundle.WebApp) { w.Systemd.RestartDelaySec = 30 }),
			"always", uint32(100), uint64(300_000_000), uint64(30_000_000)},
		{"unlimited", bgStanza(-1, 5), "always", nil, uint64(0), uint64(5_000_000)},
		{"count 2", bgStanza(2, 1), "always", uint32(3), ^uint64(0), uint64(1_000_000)},
		{"count 0", bgStanza(0, 1), "no", nil, nil, nil},
		{"zero delay floors", bgStanza(-1, 0), "always", nil, uint64(0), uint64(100_000)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := Build(Input{App: "a", Version: "1", Stanza: tt.stanza, Dir: "/srv/a", Port: 4000, EnvDir: "/e"})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				prop string
				want any
			}{{"Restart", tt.restart}, {"StartLimitBurst", tt.burst}, {"StartLimitIntervalUSec", tt.interval}, {"RestartUSec", tt.restartUS}} {
				if got := get(u, c.prop); got != c.want {
					t.Errorf("%s = %v (%T), want %v (%T)", c.prop, got, got, c.want, c.want)
				}
			}
		})
	}
}

// TestMemoryDenyWriteExecute: W^X is off unless the stanza opts in, for
// webapps and background stanzas alike.
func TestMemoryDenyWriteExecute(t *testing.T) {
	for _, tt := range []struct {
		name   string
		choice *bool
		want   bool
	}{
		{"unset is off", nil, false},
		{"opt in", ptr(true), true},
		{"opt out", ptr(false), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			web := webStanza(func(w *bundle.WebApp) { w.Systemd.MemoryDenyWriteExecute = tt.choice })
			bg := bgStanza(-1, 1)
			bg.Background.Systemd.MemoryDenyWriteExecute = tt.choice
			for _, s := range []bundle.Stanza{web, bg} {
				u, err := Build(Input{App: "a", Version: "1", Stanza: s, Dir: "/srv/a", Port: 4000, EnvDir: "/e"})
				if err != nil {
					t.Fatal(err)
				}
				if got := propValue(u, "MemoryDenyWriteExecute"); got != tt.want {
					t.Errorf("%s: MemoryDenyWriteExecute = %v, want %v", s.Type, got, tt.want)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func propValue(u Unit, name string) any {
	for _, p := range u.Properties {
		if p.Name == name {
			return p.Value.Value()
		}
	}
	return nil
}

// TestPropertySignatures pins the D-Bus types systemd 252 accepts; a wrong
// Go type is refused with "Invalid argument" only at start time.
func TestPropertySignatures(t *testing.T) {
	want := map[string]string{
		"Description": "s", "Type": "s", "ExecStart": "a(sasb)", "WorkingDirectory": "s", "Slice": "s",
		"CollectMode": "s", "KillMode": "s", "TimeoutStopUSec": "t", "SyslogIdentifier": "s",
		"LogExtraFields": "aay", "StateDirectory": "as", "Restart": "s", "RestartUSec": "t",
		"StartLimitBurst": "u", "StartLimitIntervalUSec": "t", "DynamicUser": "b", "User": "s",
		"Environment": "as", "EnvironmentFiles": "a(sb)", "NoNewPrivileges": "b",
		"CapabilityBoundingSet": "t", "AmbientCapabilities": "t", "ProtectSystem": "s", "ProtectHome": "s",
		"PrivateTmp": "b", "PrivateDevices": "b", "PrivateUsers": "b", "ProtectKernelTunables": "b",
		"ProtectKernelModules": "b", "ProtectKernelLogs": "b", "ProtectControlGroups": "b", "ProtectClock": "b",
		"ProtectHostname": "b", "ProtectProc": "s", "RestrictAddressFamilies": "(bas)", "RestrictNamespaces": "t",
		"RestrictRealtime": "b", "RestrictSUIDSGID": "b", "LockPersonality": "b", "MemoryDenyWriteExecute": "b",
		"RemoveIPC": "b", "SystemCallArchitectures": "as", "SystemCallFilter": "(bas)",
		"SystemCallErrorNumber": "i", "UMask": "u", "MemoryMax": "t", "CPUQuotaPerSecUSec": "t", "TasksMax": "t",
		"ExecStartPreEx": "a(sasas)", "TemporaryFileSystem": "a(ss)", "BindPaths": "a(ssbt)", "BindReadOnlyPaths": "a(ssbt)",
		"InaccessiblePaths": "as", "ExecStopPostEx": "a(sasas)",
		"MemoryAccounting": "b", "CPUAccounting": "b", "TasksAccounting": "b", "IOAccounting": "b", "IPAccounting": "b",
	}
	g := global()
	g.Status.Socket = "/run/keter/keter.sock"
	in := Input{App: "demo", Version: "1", Dir: "/opt/keter/temp/demo-1", Port: 4000, Global: g, EnvDir: "/e",
		StopHook: []string{"/bin/true"},
		Stanza:   webStanza(func(w *bundle.WebApp) { w.Systemd = bundle.Systemd{MemoryMax: 1, CPUQuotaPercent: 1, TasksMax: 1} })}
	u, err := Build(in)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, p := range u.Properties {
		seen[p.Name] = true
		w, ok := want[p.Name]
		if !ok {
			t.Errorf("property %s has no pinned signature", p.Name)
			continue
		}
		if got := p.Value.Signature().String(); got != w {
			t.Errorf("%s has signature %s, want %s", p.Name, got, w)
		}
	}
	for n := range want {
		if !seen[n] {
			t.Errorf("property %s missing", n)
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
