package config

import (
	"strings"
	"testing"
)

func TestACMEConfig(t *testing.T) {
	c, warns, err := Parse([]byte(`root: /r
listeners:
  - port: 80
  - acme: true
acme:
  email: ops@example.com
  trusted-roots: acme-ca.pem
`), "/etc/keter")
	if err != nil || len(warns) != 0 {
		t.Fatalf("err %v, warnings %v", err, warns)
	}
	l := c.Listeners[1]
	if !l.ACME || !l.Secure() || l.Port != 443 {
		t.Errorf("acme listener %+v: want secure on 443", l)
	}
	if c.ACME.Directory != LetsEncrypt || c.ACME.TrustedRoots != "/etc/keter/acme-ca.pem" {
		t.Errorf("acme defaults %+v", c.ACME)
	}
	if !c.ACMEEnabled() || !c.ACMEListener() || !c.ACMEServes("shop.example.com") || c.ACMEServes("localhost") {
		t.Error("ACMEEnabled/ACMEListener/ACMEServes disagree with the config")
	}
	for _, st := range []string{"postgres://keter@db.internal/keter_acme?passfile=/etc/keter/pgpass", "host=/run/postgresql dbname=keter_acme"} {
		c, _, err := Parse([]byte("root: /r\nlisteners: [{port: 80}]\nacme: {email: a@b.c, storage: '"+st+"'}\n"), "/")
		if err != nil || c.ACME.Storage != st {
			t.Errorf("storage %q: %v", st, err)
		}
	}
	plain, _, err := Parse([]byte("root: /r\n"), "/")
	if err != nil || plain.ACMEEnabled() || plain.ACMEServes("shop.example.com") {
		t.Errorf("a config without acme uses ACME (err %v)", err)
	}
}

func TestACMEConfigRefused(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"no email", "listeners: [{port: 80}, {port: 443, acme: true}]\n", "acme.email: required"},
		{"no plain listener", "listeners: [{port: 443, acme: true}]\nacme: {email: a@b.c}\n", "needs a plain-HTTP listener"},
		{"email but only TLS", "listeners: [{port: 443, certificate: c, key: k}]\nacme: {email: a@b.c}\n", "needs a plain-HTTP listener"},
		{"certificate and acme", "listeners: [{port: 80}, {port: 443, acme: true, certificate: c, key: k}]\nacme: {email: a@b.c}\n", "acme and certificate exclude each other"},
		{"bad email", "acme: {email: nobody}\n", `"nobody" is not an email address`},
		{"http directory", "acme: {email: a@b.c, directory: 'http://ca.example/dir'}\n", "not an https:// URL"},
		{"storage not postgres", "acme: {email: a@b.c, storage: 'redis://cache:6379/0'}\n", "acme.storage: redis:// is not supported"},
		{"storage does not parse", "acme: {email: a@b.c, storage: 'host=db port=five password=Hunter2'}\n", "acme.storage: not a PostgreSQL connection string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte("root: /r\n"+tc.yaml), "/")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "Hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

func TestACMESkip(t *testing.T) {
	public := ACME{Directory: LetsEncrypt}
	private := ACME{Directory: "https://127.0.0.1:14000/dir"}
	for _, tc := range []struct {
		host            string
		public, private bool // skipped
	}{
		{"shop.example.com", false, false},
		{"*.example.com", true, true},
		{"127.0.0.1", true, true},
		{"::1", true, true},
		{"localhost", true, true},
		{"app.localhost", true, true},
		{"shop.test", true, false},
		{"x.invalid", true, false},
		{"intranet", true, false},
		{"nas.home.arpa", true, false},
	} {
		if got := public.Skip(tc.host) != ""; got != tc.public {
			t.Errorf("Let's Encrypt: Skip(%q) = %q, want skipped=%v", tc.host, public.Skip(tc.host), tc.public)
		}
		if got := private.Skip(tc.host) != ""; got != tc.private {
			t.Errorf("private CA: Skip(%q) = %q, want skipped=%v", tc.host, private.Skip(tc.host), tc.private)
		}
	}
}
