package config

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestDefaults(t *testing.T) {
	c, warns, err := Parse([]byte("root: state\n"), "/etc/keter")
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Fatalf("unexpected warnings %v", warns)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"root resolves against the config's folder", c.Root, "/etc/keter/state"},
		{"one listener on port 80, all addresses", c.Listeners, []Listener{{Host: "*", Port: 80}}},
		{"graceful drain", c.GracefulDrainMicros, int64(20_000_000)},
		{"nginx mode", c.Nginx.Mode, ModeManaged},
		{"nginx binary", c.Nginx.Binary, "/usr/sbin/nginx"},
		{"switch by map where nftables works", c.Nginx.Switch, SwitchAuto},
		{"nftables table", c.Nginx.NftTable, "keter"},
		{"Keter's port ranges", len(c.PortManager.Ranges), len(DefaultPortRanges)},
		{"external ports", [2]int{c.ExternalHTTPPort, c.ExternalHTTPSPort}, [2]int{80, 443}},
		{"incoming", c.Incoming(), "/etc/keter/state/incoming"},
		{"socket", c.Status.Socket, "/etc/keter/state/etc/keter.sock"},
		{"no log lines to callers keter cannot identify", c.Status.RemoteLogs, false},
	}
	for _, ch := range checks {
		if s1, s2 := sprint(ch.got), sprint(ch.want); s1 != s2 {
			t.Errorf("%s: got %s, want %s", ch.name, s1, s2)
		}
	}
}

func TestStatusRemoteLogs(t *testing.T) {
	c, warns, err := Parse([]byte("root: /r\nstatus:\n  listen: 10.0.0.1:9394\n  remote-logs: true\n"), "/")
	if err != nil || len(warns) != 0 {
		t.Fatalf("%v %v", warns, err)
	}
	if !c.Status.RemoteLogs || c.Status.Listen != "10.0.0.1:9394" {
		t.Fatalf("status %+v, want remote-logs on", c.Status)
	}
}

func TestTLSListenerDefaultsTo443(t *testing.T) {
	c, _, err := Parse([]byte("root: /r\nlisteners:\n  - certificate: c.pem\n    key: k.pem\n"), "/etc/keter")
	if err != nil {
		t.Fatal(err)
	}
	l := c.Listeners[0]
	if l.Port != 443 || !l.Secure() || l.Certificate != filepath.Join("/etc/keter", "c.pem") {
		t.Fatalf("listener %+v", l)
	}
}

func TestUnknownKeysAreNamed(t *testing.T) {
	_, warns, err := Parse([]byte("root: /r\nlistners: []\nrotate-logs: true\n"), "/")
	if err != nil {
		t.Fatal(err)
	}
	all := ""
	for _, w := range warns {
		all += string(w) + "\n"
	}
	if !strings.Contains(all, `"listners"`) || !strings.Contains(all, `"rotate-logs"`) || len(warns) != 2 {
		t.Fatalf("warnings %q", all)
	}
}

func TestValidateReportsEverything(t *testing.T) {
	_, _, err := Parse([]byte(`
listeners:
  - port: 70000
  - certificate: only-cert.pem
nginx: {mode: sideways, switch: dnat, nft-table: "a b"}
port-manager: {ranges: [{from: 10, to: 5}]}
`), "/")
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"root: required", "listeners[0].port", "listeners[1]: certificate and key", "nginx.mode", "nginx.switch", "nginx.nft-table", "port-manager.ranges[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

// TestRootOfPlainCharacters: systemd rewrites "$", ";", "%" and spaces in
// command lines, and the units' hooks live under root.
func TestRootOfPlainCharacters(t *testing.T) {
	for _, root := range []string{"/opt/ke$ter", "/opt/a;b", "/opt/%n", "/opt/my keter", `/opt/a"b`} {
		_, _, err := Parse([]byte(fmt.Sprintf("root: '%s'\n", root)), "/")
		if err == nil || !strings.Contains(err.Error(), "root: ") || !strings.Contains(err.Error(), "use letters, digits") {
			t.Errorf("root %q: %v, want refused", root, err)
		}
	}
	if _, _, err := Parse([]byte("root: /var/lib/keter-2.0/x_y+z\n"), "/"); err != nil {
		t.Errorf("a plain root refused: %v", err)
	}
}

func TestBadYAML(t *testing.T) {
	if _, _, err := Parse([]byte("root: [unclosed"), "/"); err == nil || !strings.Contains(err.Error(), "parsing keter config") {
		t.Fatalf("err = %v", err)
	}
}

func sprint(v any) string { return fmt.Sprintf("%+v", v) }

// TestKeter0xListeners: top-level host, port and ssl (Keter 0.x, as the
// seed README's config has them) become listeners the way the Haskell
// Keter converts them, only when listeners is absent.
func TestKeter0xListeners(t *testing.T) {
	const seed = `root: ..
host: 127.0.0.1
port: 8080
ssl:
  host: 127.0.0.1
  port: 8443
  key: ssl/site.key
  certificate: ssl/site.pem
`
	tests := []struct {
		name     string
		yaml     string
		want     []Listener
		wantWarn string
		wantErr  []string
	}{
		{"the seed README's config, filled in", seed, []Listener{
			{Host: "127.0.0.1", Port: 8080},
			{Host: "127.0.0.1", Port: 8443, Key: "/opt/keter/etc/ssl/site.key", Certificate: "/opt/keter/etc/ssl/site.pem"},
		}, "", nil},
		{"port only", "root: /r\nport: 8080\n", []Listener{{Host: "*", Port: 8080}}, "", nil},
		{"host only", "root: /r\nhost: 10.0.0.1\n", []Listener{{Host: "10.0.0.1", Port: 80}}, "", nil},
		{"ssl only keeps plain HTTP on 80", "root: /r\nssl:\n  key: /k\n  certificate: /c\n  session: true\n", []Listener{
			{Host: "*", Port: 80},
			{Host: "*", Port: 443, Key: "/k", Certificate: "/c", Session: true},
		}, "", nil},
		{"null values are unset", "root: /r\nhost:\nport:\nssl:\n", []Listener{{Host: "*", Port: 80}}, "", nil},
		{"listeners wins, with a warning", "root: /r\nport: 8080\nlisteners:\n  - port: 81\n", []Listener{{Host: "*", Port: 81}},
			"keys host, port and ssl (Keter 0.x) are ignored: listeners is given", nil},
		{"ssl needs key and certificate", "root: /r\nssl:\n  host:\n  port:\n  key:\n  certificate:\n", nil, "",
			[]string{"ssl: certificate and key are both required"}},
		{"ports are checked", "root: /r\nport: 70000\nssl: {port: 0, key: k, certificate: c}\n", nil, "",
			[]string{"port: 70000 is not a TCP port", "ssl.port: 0 is not a TCP port"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, warns, err := Parse([]byte(tt.yaml), "/opt/keter/etc")
			all := fmt.Sprint(warns)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("no error; listeners %+v", c.Listeners)
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q: %v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sprint(c.Listeners), sprint(tt.want); got != want {
				t.Errorf("listeners %s, want %s", got, want)
			}
			if tt.wantWarn == "" && len(warns) != 0 || !strings.Contains(all, tt.wantWarn) {
				t.Errorf("warnings %s, want %q", all, tt.wantWarn)
			}
		})
	}
	c, _, err := Parse([]byte(seed), "/opt/keter/etc")
	if err != nil || c.Root != "/opt/keter" {
		t.Fatalf("root: .. in /opt/keter/etc is %q (%v), want /opt/keter", c.Root, err)
	}
}
