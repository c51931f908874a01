package unitgen

import (
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// TestAppRootACME: hosts under ACME count as ssl for APPROOT; hosts that
// cannot get a certificate keep http.
func TestAppRootACME(t *testing.T) {
	acme, _, err := config.Parse([]byte("root: /opt/keter\nlisteners: [{port: 80}, {port: 443, acme: true}]\nacme: {email: ops@example.com}\n"), "/etc/keter")
	if err != nil {
		t.Fatal(err)
	}
	plain := global()
	for _, tc := range []struct {
		name string
		g    *config.Config
		host string
		ssl  bundle.SSL
		want string
	}{
		{"acme listener", acme, "shop.example.com", bundle.SSL{}, "https://shop.example.com"},
		{"acme listener, localhost", acme, "localhost", bundle.SSL{}, "http://localhost"},
		{"ssl: acme", plain, "shop.example.com", bundle.SSL{Enabled: true, ACME: true}, "https://shop.example.com"},
		{"no acme", plain, "shop.example.com", bundle.SSL{}, "http://shop.example.com"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := webStanza(func(w *bundle.WebApp) { w.Hosts, w.SSL = []string{tc.host}, tc.ssl })
			u, err := Build(Input{App: "demo", Version: "1", Stanza: st, Dir: "/srv/demo", Port: 4000, Global: tc.g, EnvDir: "/etc/keter/env"})
			if err != nil {
				t.Fatal(err)
			}
			if pub, _ := env(t, u); pub["APPROOT"] != tc.want {
				t.Errorf("APPROOT %q, want %q", pub["APPROOT"], tc.want)
			}
		})
	}
}
