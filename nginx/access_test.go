package nginx

import (
	"errors"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
)

// testPassword is the password of every hash in testHashes.
const testPassword = "open sesame"

// testHashes are testPassword in each scheme nginx checks on Debian 12
// (made with openssl passwd and Python's crypt).
var testHashes = map[string]string{
	"bcrypt": "$2b$05$abcdefghijklmnopqrstuupx2xBUC4954936wVIjyyPHmUBFu0wCW",
	"sha512": "$6$keterSalt01$Pst2ONWRlBZ7V4eT1hc5Qlgl62VMHe5Hmf9YZakKlBULeIT5ijUxCDzP.bRWdV4Y030WXKnK6kSuLgf3vc4GQ/",
	"sha256": "$5$keterSalt01$dEkHzzlDJQ2L.04dozz.i.J9jD7hrkGnTUFpLb4vjw0",
	"apr1":   "$apr1$keter01$p38b6Jqo8xJkYwnc689lM0",
	"ssha":   "{SSHA}3h9xs3NvbTo4NpTUJ1lZlpDlHmdzYWx0MTIzNA==",
	"sha":    "{SHA}W8r/fyL/UzygmbNAjq2HbA67qac=",
}

func TestLimitRate(t *testing.T) {
	for _, c := range []struct {
		limit, period int
		want          string
	}{{10, 1, "10r/s"}, {120, 60, "2r/s"}, {100, 60, "100r/m"}, {4, 5, "48r/m"}, {1000, 3600, "17r/m"}, {1, 60, "1r/m"}, {1, 100, "1r/m"}, {1, 121, ""}} {
		got, err := limitRate(c.limit, c.period)
		if got != c.want || (err != nil) != (c.want == "") {
			t.Errorf("limitRate(%d, %d) = %q, %v; want %q", c.limit, c.period, got, err, c.want)
		}
	}
}

// TestAccessRefusesHostile: nginx syntax in any access value is refused
// before it can reach the config, and so are plain passwords.
func TestAccessRefusesHostile(t *testing.T) {
	g := globalConfig(t, "")
	auth := func(cfg map[string]any) bundle.Stanza {
		s := webapp("a.example.com")
		s.WebApp.Middleware = []bundle.Middleware{{Name: "basic-auth", Config: cfg}}
		return s
	}
	good := testHashes["bcrypt"]
	for name, st := range map[string]bundle.Stanza{
		"hash with a newline":   auth(map[string]any{"hashed-creds": map[string]any{"u": good + "\nevil:" + good}}),
		"hash with syntax":      auth(map[string]any{"hashed-creds": map[string]any{"u": `$6$x$y"; } server { listen 1;`}}),
		"plain hash":            auth(map[string]any{"hashed-creds": map[string]any{"u": "{PLAIN}secret"}}),
		"user with a colon":     auth(map[string]any{"hashed-creds": map[string]any{"u:x": good}}),
		"user with a newline":   auth(map[string]any{"hashed-creds": map[string]any{"u\nv": good}}),
		"user with syntax":      auth(map[string]any{"hashed-creds": map[string]any{"u;}": good}}),
		"realm with quotes":     auth(map[string]any{"realm": `x" ; auth_basic off; "`, "hashed-creds": map[string]any{"u": good}}),
		"realm with a variable": auth(map[string]any{"realm": "$host", "hashed-creds": map[string]any{"u": good}}),
		"htpasswd relative":     auth(map[string]any{"htpasswd": "etc/users"}),
		"htpasswd with syntax":  auth(map[string]any{"htpasswd": "/etc/x; include /etc/passwd"}),
		"htpasswd with dotdot":  auth(map[string]any{"htpasswd": "/etc/keter/../shadow"}),
		"plain creds":           auth(map[string]any{"creds": map[string]any{"u": "p"}}),
		"no users":              auth(map[string]any{"realm": "r"}),
		"local message": func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.Middleware = []bundle.Middleware{{Name: "local", Config: map[string]any{"message": `"; return 200 "x`}}}
			return s
		}(),
		"cidr with syntax": func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.AllowFrom = []string{"10.0.0.0/8; allow all"}
			return s
		}(),
		"cidr with host bits": func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.DenyFrom = []string{"10.0.0.1/8"}
			return s
		}(),
		"address with a zone": func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.DenyFrom = []string{"fe80::1%eth0"}
			return s
		}(),
		"cidr all": func() bundle.Stanza { s := webapp("a.example.com"); s.WebApp.DenyFrom = []string{"all"}; return s }(),
		"two basic-auth": func() bundle.Stanza {
			s := auth(map[string]any{"hashed-creds": map[string]any{"u": good}})
			s.WebApp.Middleware = append(s.WebApp.Middleware, s.WebApp.Middleware[0])
			return s
		}(),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Render(g, []App{app("h", one(map[int]int{0: 43124}), st)}, goldenPaths())
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `app "h"`) {
				t.Fatalf("want ErrInvalid naming the app, got %v", err)
			}
			if strings.Contains(err.Error(), testPassword) {
				t.Fatalf("the error shows a password: %v", err)
			}
		})
	}
}

// TestAccessOnlyInSiteLocations: keter's own locations (ACME challenge,
// healthcheck, response pages) carry no rule, whatever the stanza asks.
func TestAccessOnlyInSiteLocations(t *testing.T) {
	g := globalConfig(t, "healthcheck-path: /keter-health\nproxy-exception-response-file: /etc/keter/down.html\n")
	s := webapp("a.example.com")
	s.WebApp.AllowFrom = []string{"192.0.2.1"}
	s.WebApp.Middleware = []bundle.Middleware{{Name: "basic-auth", Config: map[string]any{"hashed-creds": map[string]any{"u": testHashes["bcrypt"]}}},
		{Name: "local", Config: map[string]any{}},
		{Name: "rate-limiter", Config: map[string]any{"throttles": []any{map[string]any{"name": "n", "limit": 1, "period": 1, "algorithm": "FixedWindow", "identifier_by": "ip"}}}}}
	p := goldenPaths()
	p.ACME = &ACME{Dir: "/srv/keter/etc/nginx/acme", Fallback: "/srv/keter/etc/nginx/fallback.pem", Challenge: "/srv/keter/etc/nginx/acme.sock"}
	out, err := Render(g, []App{app("a", one(map[int]int{0: 43124}), s)}, p)
	if err != nil {
		t.Fatal(err)
	}
	ds, _, err := parseConf(string(out.Main))
	if err != nil {
		t.Fatal(err)
	}
	rules := map[string]bool{"auth_basic": true, "auth_basic_user_file": true, "allow": true, "deny": true, "limit_req": true, "if": true}
	var walk func(ds []directive, where string)
	seen := 0
	walk = func(ds []directive, where string) {
		for _, d := range ds {
			if d.name == "server" && len(d.block) > 0 {
				walk(d.block, "server")
				continue
			}
			if rules[d.name] && where != "location /" && where != "location = /generation" {
				t.Errorf("%s %v inside %s", d.name, d.args, where)
			}
			if rules[d.name] && where == "location /" {
				seen++
			}
			if d.isBlk && d.name != "if" {
				walk(d.block, d.name+" "+strings.Join(d.args, " "))
			}
		}
	}
	walk(ds, "main")
	if seen < 5 {
		t.Fatalf("only %d rules in the site's location:\n%s", seen, out.Main)
	}
}
