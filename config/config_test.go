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
	}
	for _, ch := range checks {
		if s1, s2 := sprint(ch.got), sprint(ch.want); s1 != s2 {
			t.Errorf("%s: got %s, want %s", ch.name, s1, s2)
		}
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

func TestBadYAML(t *testing.T) {
	if _, _, err := Parse([]byte("root: [unclosed"), "/"); err == nil || !strings.Contains(err.Error(), "parsing keter config") {
		t.Fatalf("err = %v", err)
	}
}

func sprint(v any) string { return fmt.Sprintf("%+v", v) }
