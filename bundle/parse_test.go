package bundle

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/")

// TestParseGolden parses every testdata/parse/*.yaml and compares the model
// and the warnings with the .golden.json next to it.
func TestParseGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/parse/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("fixtures missing: %v %v", files, err)
	}
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			c, warns, err := ParseWithWarnings(data)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			got, err := json.MarshalIndent(struct {
				Config   *AppConfig `json:"config"`
				Warnings []string   `json:"warnings"`
			}{c, warns}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, '\n')
			golden := strings.TrimSuffix(in, ".yaml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n%s", in, golden, got)
			}
		})
	}
}

// TestParseSemantics asserts the Keter meanings the golden files encode,
// so a wrong -update cannot bless them silently.
func TestParseSemantics(t *testing.T) {
	flat := mustParse(t, "testdata/parse/flat.yaml")
	if n := len(flat.Stanzas); n != 5 { // webapp, 2 static (deduped), 2 redirects
		t.Fatalf("flat: %d stanzas, want 5", n)
	}
	w := flat.Stanzas[0].WebApp
	if w == nil || w.Path != "hello" || !w.SSL.Enabled || w.EnsureAliveTimeBound != 90000000 {
		t.Errorf("flat webapp: %+v", w)
	}
	if w.InstanceCount() != 2 {
		t.Errorf("flat instances: %d, want 2", w.InstanceCount())
	}
	if got := strings.Join(w.Hosts, ","); got != "tealc-mint,pong,www.mysite.com,*.pong.example.com" {
		t.Errorf("flat hosts %q", got)
	}
	if s := flat.Stanzas[1].StaticFiles; s == nil || s.Hosts[0] != "assets.mysite.com" || s.Root != "static" || !s.DirectoryListing {
		t.Errorf("flat static[0] (sorted like Keter's Set): %+v", s)
	}
	if s := flat.Stanzas[2].StaticFiles; s == nil || s.Root != "." {
		t.Errorf("flat static root .. should be the bundle root: %+v", s)
	}
	if r := flat.Stanzas[3].Redirect; r == nil || r.Status != 301 || r.Hosts[0] != "mysite.com" || r.Actions[0].Host != "www.mysite.com" {
		t.Errorf("flat redirect: %+v", r)
	}
	if flat.Plugins.Postgres == nil {
		t.Error("flat postgres: true lost")
	}

	st := mustParse(t, "testdata/parse/stanza.yaml")
	a := st.Stanzas[0].WebApp
	if a.SSL.Certificate != "certs/site.pem" || a.SSL.Key != "/etc/ssl/private/site.key" || a.SSL.ChainCertificates[0] != "certs/chain.pem" {
		t.Errorf("ssl paths: %+v", a.SSL)
	}
	if r := st.Stanzas[4].Redirect; r == nil || !r.SSL.Enabled || !r.SSL.ACME || st.Stanzas[3].Redirect.SSL.ACME {
		t.Errorf("ssl: acme (Keter #174's spelling): %+v", st.Stanzas[4])
	}
	if a.Env["WORKERS"] != "4" || a.ForwardEnv[1] != "ANOTHER_ENV_VAR" || a.PortEnvVars[0] != "YESOD_PORT" {
		t.Errorf("env: %+v %v %v", a.Env, a.ForwardEnv, a.PortEnvVars)
	}
	if a.InstanceCount() != 3 || st.Stanzas[1].WebApp.InstanceCount() != 1 {
		t.Errorf("instances: %d and %d, want 3 and the default 1", a.InstanceCount(), st.Stanzas[1].WebApp.InstanceCount())
	}
	if a.Hosts[1] != "pong1_0.example.com" {
		t.Errorf("hosts not lower-cased: %v", a.Hosts)
	}
	if wx := a.Systemd.MemoryDenyWriteExecute; a.Systemd.MemoryMax != 512<<20 || a.Systemd.CPUQuotaPercent != 50 || wx == nil || *wx || a.Systemd.RestartDelaySec != 2 {
		t.Errorf("systemd: %+v", a.Systemd)
	}
	if len(a.Middleware) != 5 || a.Middleware[2].Name != "basic-auth" {
		t.Errorf("middleware: %+v", a.Middleware)
	}
	if st.Stanzas[1].WebApp.Path != "/usr/bin/python3" {
		t.Errorf("absolute exec not kept: %q", st.Stanzas[1].WebApp.Path)
	}
	if s := st.Stanzas[2]; !s.RequiresSecure || s.StaticFiles.Root != "static" {
		t.Errorf("static: %+v", s)
	}
	if r := st.Stanzas[3].Redirect; r.Status != 303 || r.Actions[1].Port != 8443 || !r.Actions[1].Secure {
		t.Errorf("redirect defaults: %+v", r)
	}
	if r := st.Stanzas[5].ReverseProxy; r.ReversedPort != 80 || *r.Timeout != 5000000 || !r.PreserveHost || r.RewriteRequest[0].To != `\1.example.com` {
		t.Errorf("reverse proxy: %+v", r)
	}
	if b := st.Stanzas[6].Background; b.RestartCount != UnlimitedRestarts || b.RestartDelaySeconds != 5 {
		t.Errorf("background defaults: %+v", b)
	}
	if b := st.Stanzas[7].Background; b.RestartCount != 3 || b.RestartDelaySeconds != 10 || b.Systemd.MemoryMax != 1<<30 {
		t.Errorf("background: %+v", b)
	}
	if p := st.Plugins.Postgres; p == nil || p.Server != "db.example.com" || p.Port != 5433 {
		t.Errorf("postgres plugin: %+v", p)
	}
	_, warns, err := ParseWithWarnings(readFile(t, "testdata/parse/stanza.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"stanzas[7].favourite-colour: unknown key ignored", "postgres: ignored in the stanza format", "stanzas[0].middleware[1]: middleware jsonp"} {
		if !containsPrefix(warns, want) {
			t.Errorf("warning %q missing from %q", want, warns)
		}
	}
}

func containsPrefix(l []string, p string) bool {
	for _, s := range l {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func mustParse(t *testing.T, p string) *AppConfig {
	t.Helper()
	c, err := Parse(readFile(t, p))
	if err != nil {
		t.Fatalf("%s: %v", p, err)
	}
	return c
}

// parseErrorCases are invalid configs with the messages they must give.
var parseErrorCases = []struct {
	name string
	yaml string
	want []string // substrings, each must appear in the joined error
}{
	{"not yaml", "exec: [", []string{"parsing keter.yaml"}},
	{"not a mapping", "- a\n- b\n", []string{"(top level): invalid value: must be a mapping"}},
	{"flat needs host", "exec: ../app\n", []string{"host: invalid value: required"}},
	{"flat nothing", "args: [a]\n", []string{"nothing to run"}},
	{"instances out of range", "stanzas:\n  - type: webapp\n    exec: ../a\n    host: a.com\n    instances: 0\n  - type: webapp\n    exec: ../b\n    host: b.com\n    instances: 65\n", []string{
		"stanzas[0].instances: invalid value: must be between 1 and 64, found 0",
		"stanzas[1].instances: invalid value: must be between 1 and 64, found 65",
	}},
	{"flat bad hosts", "exec: ../app\nhost: 'a b'\nextra-hosts: ['x;y', ok.com]\n", []string{
		`host: invalid value: host name "a b" contains " "`,
		`extra-hosts[0]: invalid value: host name "x;y" contains ";"`,
	}},
	{"flat static escapes", "static-hosts:\n- host: s\n  root: ../../\n- host: t\n  root: /home\n", []string{
		`static-hosts[0].root: invalid value: path "../../" escapes the bundle`,
		`static-hosts[1].root: invalid value: absolute path "/home" is not allowed here`,
	}},
	{"flat redirect injection", "redirects:\n- from: 'a.com; }'\n  to: b.com\n", []string{`redirects[0].from: invalid value`}},
	{"all at once", `stanzas:
  - type: webapp
    host: a.example.com
  - type: webapp
    exec: ../../../bin/sh
    hosts: []
  - type: static-files
    host: "x.com\nserver { listen 1; }"
    root: ../../etc
  - type: redirect
    host: r.example.com
    status: 200
    actions:
      - url: "http://evil.com/$host"
      - path: "no-slash"
        host: ok.com
      - host: "*.bad.com"
  - type: reverse-proxy
    reversed-host: "a'b"
    reversing-host: "{x}"
    rewrite-request:
      - header: "X Bad"
        from: "("
        to: "$1"
  - type: background
    exec: ../w
    restart-count: -2
    restart-delay-seconds: soon
    forward-env: ["BAD-NAME"]
  - type: cron
  - type: webapp
    exec: ../x
    host: "Ok.com"
    ssl: maybe
    ensure-alive-time-bound: 0
    port-env-vars: ["1X"]
    health-check-path: "/h ealth"
    middleware:
      - gzip
      - headers:
          "Bad Header": x
          X-Ok: "a\"b"
      - basic-auth:
          realm: "r\"; }"
    systemd:
      memory-max: lots
      cpu-quota: 0%
plugins:
  postgres: maybe
`, []string{
		"stanzas[0].exec: invalid value: required",
		`stanzas[1].exec: invalid value: path "../../../bin/sh" escapes the bundle`,
		"stanzas[1].hosts: invalid value: must not be empty",
		`stanzas[2].host: invalid value: host name "x.com\nserver { listen 1; }" contains "\n"`,
		`stanzas[2].root: invalid value: path "../../etc" escapes the bundle`,
		"stanzas[3].status: invalid value: must be between 300 and 399, found 200",
		`stanzas[3].actions[0].url: invalid value: URL "http://evil.com/$host" contains "$"`,
		`stanzas[3].actions[1].path: invalid value: path "no-slash" must start with '/'`,
		`stanzas[3].actions[2].host: invalid value: host "*.bad.com" must not be a wildcard here`,
		`stanzas[4].reversed-host: invalid value: host name "a'b" contains "'"`,
		"stanzas[4].reversed-port: invalid value: required",
		`stanzas[4].reversing-host: invalid value: host name "{x}" contains "{"`,
		`stanzas[4].rewrite-request[0].header: invalid value: header name "X Bad" contains " "`,
		`stanzas[4].rewrite-request[0].from: invalid value: regular expression "("`,
		`stanzas[4].rewrite-request[0].to: invalid value: replacement "$1" contains "$"`,
		`stanzas[5].restart-count: invalid value: must be a number ≥ 0 or "unlimited"`,
		"stanzas[5].restart-delay-seconds: invalid value: must be a whole number",
		`stanzas[5].forward-env[0]: invalid value: environment variable name "BAD-NAME"`,
		`stanzas[6].type: invalid value: unknown stanza type "cron"`,
		"stanzas[7].ssl: invalid value: must be true, false, acme or a mapping",
		"stanzas[7].ensure-alive-time-bound: invalid value: must be between 1 and",
		`stanzas[7].port-env-vars[0]: invalid value: environment variable name "1X"`,
		`stanzas[7].health-check-path: invalid value: path "/h ealth" contains " "`,
		`stanzas[7].middleware[0]: invalid value: unknown middleware "gzip"`,
		`stanzas[7].middleware[1].headers.Bad Header: invalid value: header name "Bad Header"`,
		`stanzas[7].middleware[1].headers.X-Ok: invalid value: header value "a\"b" contains "\""`,
		`stanzas[7].middleware[2].basic-auth.realm: invalid value: realm "r\"; }" contains "\""`,
		"stanzas[7].middleware[2].basic-auth.creds: invalid value: required",
		`stanzas[7].systemd.memory-max: invalid value: size "lots"`,
		`stanzas[7].systemd.cpu-quota: invalid value: CPU quota "0%"`,
		"plugins.postgres: invalid value: must be true, false or a list",
	}},
	{"ssl object needs both", "stanzas:\n- type: static-files\n  host: a.com\n  root: ..\n  ssl:\n    certificate: ../c.pem\n", []string{"stanzas[0].ssl.key: invalid value: required"}},
	{"url with host form", "stanzas:\n- type: redirect\n  host: a.com\n  actions:\n  - url: https://b.com/\n    port: 80\n", []string{"stanzas[0].actions[0].port: invalid value: not allowed together with url"}},
	{"empty stanzas", "stanzas: []\n", []string{"stanzas: invalid value: must hold at least one stanza"}},
	{"duplicate key", "exec: ../a\nexec: ../b\nhost: a.com\n", []string{"exec: invalid value: key given twice"}},
	{"background systemd restart-delay-sec", "stanzas:\n- type: background\n  exec: ../w\n  systemd:\n    restart-delay-sec: 3\n", []string{"stanzas[0].systemd.restart-delay-sec: invalid value: not for background"}},
	{"host in two stanzas", "exec: ../a\nhost: a.com\nstatic-hosts:\n- host: A.com\n  root: ..\n", []string{"stanzas[1]: invalid value: host a.com is already served by stanzas[0]"}},
	{"two documents", "exec: ../a\nhost: a.com\n---\nexec: ../b\n", []string{"more than one YAML document"}},
	{"W^X on and allow-jit", "stanzas:\n- type: webapp\n  exec: ../a\n  host: a.com\n  systemd:\n    allow-jit: true\n    memory-deny-write-execute: true\n",
		[]string{"stanzas[0].systemd.memory-deny-write-execute: invalid value: true contradicts allow-jit: true (allow-jit: true means memory-deny-write-execute: false); keep one of the two"}},
	{"W^X off and no JIT", "stanzas:\n- type: background\n  exec: ../a\n  systemd:\n    allow-jit: false\n    memory-deny-write-execute: false\n",
		[]string{"stanzas[0].systemd.memory-deny-write-execute: invalid value: false contradicts allow-jit: false"}},
	{"W^X not a bool", "stanzas:\n- type: webapp\n  exec: ../a\n  host: a.com\n  systemd:\n    memory-deny-write-execute: sometimes\n",
		[]string{"stanzas[0].systemd.memory-deny-write-execute: invalid value: must be true or false"}},
}

// TestDenyWriteExecute: the W^X key and allow-jit, its opposite, are one
// tri-state choice; unset stays unset so unitgen's default applies.
func TestDenyWriteExecute(t *testing.T) {
	on, off := true, false
	for _, tt := range []struct {
		name, systemd string
		want          *bool
	}{
		{"unset", "", nil},
		{"other keys only", "    tasks-max: 8\n", nil},
		{"opt in", "    memory-deny-write-execute: true\n", &on},
		{"opt out", "    memory-deny-write-execute: false\n", &off},
		{"allow-jit true", "    allow-jit: true\n", &off},
		{"allow-jit false", "    allow-jit: false\n", &on},
		{"both agree on", "    allow-jit: false\n    memory-deny-write-execute: true\n", &on},
		{"both agree off", "    allow-jit: true\n    memory-deny-write-execute: false\n", &off},
	} {
		t.Run(tt.name, func(t *testing.T) {
			y := "stanzas:\n- type: webapp\n  exec: ../a\n  host: a.com\n"
			if tt.systemd != "" {
				y += "  systemd:\n" + tt.systemd
			}
			c, err := Parse([]byte(y))
			if err != nil {
				t.Fatal(err)
			}
			got := c.Stanzas[0].WebApp.Systemd.MemoryDenyWriteExecute
			if (got == nil) != (tt.want == nil) || (got != nil && *got != *tt.want) {
				t.Errorf("memory-deny-write-execute = %s, want %s", fmtBoolPtr(got), fmtBoolPtr(tt.want))
			}
		})
	}
}

func fmtBoolPtr(b *bool) string {
	if b == nil {
		return "unset"
	}
	return strconv.FormatBool(*b)
}

// TestParseErrors checks that every problem is reported at once, each
// with its key path.
func TestParseErrors(t *testing.T) {
	for _, tt := range parseErrorCases {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("no error; parsed %+v", c)
			}
			if c != nil {
				t.Errorf("config returned along with an error")
			}
			msg := err.Error()
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q; got:\n%s", w, msg)
				}
			}
			if len(tt.want) > 1 {
				if n := len(strings.Split(msg, "\n")); n < len(tt.want) {
					t.Errorf("%d lines for %d problems: not all reported at once", n, len(tt.want))
				}
			}
			if !errors.Is(err, ErrInvalid) && !strings.Contains(msg, "parsing keter.yaml") {
				t.Errorf("error is not ErrInvalid: %v", err)
			}
		})
	}
}

func TestValidHost(t *testing.T) {
	good := []string{"example.com", "A.Example.COM", "*.example.com", "localhost", "keter1_0", "127.0.0.1", "xn--bcher-kva.example", "a-b.c"}
	for _, h := range good {
		if err := ValidHost(h); err != nil {
			t.Errorf("ValidHost(%q) = %v, want ok", h, err)
		}
	}
	bad := []string{"", "a b", "a;b", "a.com;", `a"b`, "a'b", "a{b", "a}b", "$host", "a\nb", "a#b", "a/b", "a:80", "a.com.", ".a.com",
		"a..b", "-a.com", "a-.com", "*", "*.", "a.*.com", "**.a.com", "*a.com", "a\\b", "a\tb", "ä.com", strings.Repeat("a", 64) + ".com",
		strings.Repeat("a.", 127) + "aa", "keter-generation.invalid", "*.x.INVALID"}
	for _, h := range bad {
		err := ValidHost(h)
		if err == nil {
			t.Errorf("ValidHost(%q) accepted", h)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidHost(%q) error not ErrInvalid: %v", h, err)
		}
	}
}

func TestValidURLAndPath(t *testing.T) {
	for _, u := range []string{"https://a.com/", "http://a.com:8080/x?y=1&z=%20", "https://www.example.com"} {
		if err := ValidURL(u); err != nil {
			t.Errorf("ValidURL(%q) = %v", u, err)
		}
	}
	for _, u := range []string{"", "a.com/x", "ftp://a.com/", "https://a.com/$uri", "https://a.com/x;y", "https://a.com/#x", "https://a.com/\"", "https://u:p@a.com/", "https://a.com:99999/", "https://a b/", "javascript:alert(1)", "https://*.a.com/"} {
		if err := ValidURL(u); err == nil {
			t.Errorf("ValidURL(%q) accepted", u)
		}
	}
	for _, p := range []string{"/", "/a/b", "/a%20b", "/~u/x.html"} {
		if err := ValidPath(p); err != nil {
			t.Errorf("ValidPath(%q) = %v", p, err)
		}
	}
	for _, p := range []string{"", "a", "/a b", "/a;b", "/a$b", "/a?b", "/a{b", "/a\nb", "/a#b", `/a"b`} {
		if err := ValidPath(p); err == nil {
			t.Errorf("ValidPath(%q) accepted", p)
		}
	}
}

func TestAppName(t *testing.T) {
	tests := []struct {
		path, want string
		ok         bool
	}{
		{"/srv/keter/incoming/myapp.keter", "myapp", true},
		{"My_App-2.0.keter", "My_App-2.0", true},
		{".keter", "", false},
		{".hidden.keter", "", false},
		{"-x.keter", "", false},
		{"a b.keter", "", false},
		{"a;b.keter", "", false},
		{"app.tar.gz", "", false},
		{"ü.keter", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			got, err := AppName(tt.path)
			if (err == nil) != tt.ok || got != tt.want {
				t.Errorf("AppName(%q) = %q, %v; want %q ok=%v", tt.path, got, err, tt.want, tt.ok)
			}
		})
	}
}

func TestDrainKey(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       time.Duration
		err        string
	}{
		{"stanza format", "drain: 30s\nstanzas:\n  - type: webapp\n    exec: ../a\n    host: a.test\n", 30 * time.Second, ""},
		{"flat format", "drain: 1m30s\nexec: ../a\nhost: a.test\n", 90 * time.Second, ""},
		{"absent", "exec: ../a\nhost: a.test\n", 0, ""},
		{"bare number", "drain: 30\nexec: ../a\nhost: a.test\n", 0, "must be a duration with its unit"},
		{"not a duration", "drain: soon\nexec: ../a\nhost: a.test\n", 0, "must be a duration with its unit, such as 30s or 2m, found \"soon\""},
		{"zero", "drain: 0s\nexec: ../a\nhost: a.test\n", 0, "must be more than 0s"},
		{"too long", "drain: 48h\nexec: ../a\nhost: a.test\n", 0, "must be more than 0s and at most 24h0m0s, found 48h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, warns, err := ParseWithWarnings([]byte(tc.yaml))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Drain != tc.want {
				t.Fatalf("Drain = %s, want %s", c.Drain, tc.want)
			}
			for _, w := range warns {
				if strings.Contains(w, "drain") {
					t.Fatalf("warning about drain: %s", w)
				}
			}
		})
	}
}
