package nginx

import (
	"errors"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// hostile are values that try to leave their quoted string or directive.
var hostile = []string{
	"a.test; } server { listen 1; server_name evil; }",
	`a.test"`,
	"a.test'",
	"a{b}",
	"a}",
	"$host",
	"a$1",
	"a.test\nlisten 1",
	"a.test\rlisten 1",
	"a.test#comment",
	"a.test;",
	`a\"b`,
	"a b",
	"a\tb",
	"a\x00b",
	"a`b",
}

// fullModel is one app using every bundle value that reaches the config,
// and a global config using every global value.
func fullModel(t testing.TB) (*config.Config, App) {
	g := globalConfig(t, "healthcheck-path: /health\nunknown-host-response-file: /etc/keter/unknown.html\n")
	rp := &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com",
		RewriteRequest:  []bundle.Rewrite{{Header: "X-Req", From: "a(b)", To: `c\1`}},
		RewriteResponse: []bundle.Rewrite{{Header: "X-Resp", From: "a", To: "b"}}}
	web := webapp("web.example.com")
	web.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: "/etc/keter/tls/a.pem", Key: "/etc/keter/tls/a.key", ChainCertificates: []string{"/etc/keter/tls/chain.pem"}}
	web.WebApp.Middleware = []bundle.Middleware{{Name: "headers", Config: map[string]any{"X-H": "v"}},
		{Name: "basic-auth", Config: map[string]any{"realm": "r", "hashed-creds": map[string]any{"u": testHashes["bcrypt"]}}},
		{Name: "local", Config: map[string]any{"message": "m"}}}
	web.WebApp.Access = bundle.Access{AllowFrom: []string{"192.0.2.0/24"}, DenyFrom: []string{"192.0.2.1"}}
	a := app("all", one(map[int]int{0: 43124}), web,
		bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"static.example.com"},
			Middleware: []bundle.Middleware{{Name: "basic-auth", Config: map[string]any{"htpasswd": "/etc/keter/users"}}}}},
		bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"redirect.example.com"}, Actions: []bundle.RedirectAction{
			{Path: "/p", URL: "https://u.example.com/x"}, {Host: "h.example.com"}}}},
		bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: rp})
	return g, a
}

// TestRenderRefusesInjection puts each hostile value into each place a
// bundle or the global config can put a value, and wants a refusal that
// names the problem, never a config.
func TestRenderRefusesInjection(t *testing.T) {
	g0, a0 := fullModel(t)
	if _, err := Render(g0, []App{a0}, goldenPaths()); err != nil {
		t.Fatalf("the clean model must render: %v", err)
	}
	places := map[string]func(g *config.Config, a *App, v string){
		"webapp host": func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].WebApp.Hosts = []string{v} },
		"webapp second host": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Hosts = []string{"ok.example.com", v}
		},
		"webapp ssl cert": func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].WebApp.SSL.Certificate = "/etc/" + v },
		"webapp ssl key":  func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].WebApp.SSL.Key = v },
		"webapp ssl chain": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.SSL.ChainCertificates = []string{"/x/" + v}
		},
		"header name": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Middleware[0].Config = map[string]any{v: "x"}
		},
		"header value": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Middleware[0].Config = map[string]any{"X-H": v}
		},
		"basic-auth realm": func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].WebApp.Middleware[1].Config["realm"] = v },
		"basic-auth user": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Middleware[1].Config["hashed-creds"] = map[string]any{v: testHashes["bcrypt"]}
		},
		"basic-auth hash": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Middleware[1].Config["hashed-creds"] = map[string]any{"u": testHashes["sha512"] + v}
		},
		"basic-auth htpasswd": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[1].StaticFiles.Middleware[0].Config["htpasswd"] = "/etc/keter/" + v
		},
		"local message": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.Middleware[2].Config["message"] = v
		},
		"allow-from": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[0].WebApp.AllowFrom = []string{"192.0.2.0/24" + v}
		},
		"deny-from":     func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].WebApp.DenyFrom = []string{v} },
		"static root":   func(g *config.Config, a *App, v string) { a.Config.Stanzas[1].StaticFiles.Root = "public/" + v },
		"static host":   func(g *config.Config, a *App, v string) { a.Config.Stanzas[1].StaticFiles.Hosts = []string{v} },
		"bundle folder": func(g *config.Config, a *App, v string) { a.Dir = "/srv/keter/temp/" + v },
		"redirect path": func(g *config.Config, a *App, v string) { a.Config.Stanzas[2].Redirect.Actions[0].Path = "/" + v },
		"redirect url": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[2].Redirect.Actions[0].URL = "https://u.example.com/" + v
		},
		"redirect url host": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[2].Redirect.Actions[0].URL = "https://" + v + "/"
		},
		"redirect action host": func(g *config.Config, a *App, v string) { a.Config.Stanzas[2].Redirect.Actions[1].Host = v },
		"reversed host":        func(g *config.Config, a *App, v string) { a.Config.Stanzas[3].ReverseProxy.ReversedHost = v },
		"reversing host":       func(g *config.Config, a *App, v string) { a.Config.Stanzas[3].ReverseProxy.ReversingHost = v },
		"rewrite header": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[3].ReverseProxy.RewriteRequest[0].Header = v
		},
		"rewrite to": func(g *config.Config, a *App, v string) {
			a.Config.Stanzas[3].ReverseProxy.RewriteResponse[0].To = "x" + v
		},
		"healthcheck-path": func(g *config.Config, a *App, v string) { g.HealthcheckPath = "/" + v },
		"response file":    func(g *config.Config, a *App, v string) { g.UnknownHostResponseFile = "/etc/keter/" + v },
		"client max body":  func(g *config.Config, a *App, v string) { g.Nginx.ClientMaxBodySize = "1m" + v },
		"listener host":    func(g *config.Config, a *App, v string) { g.Listeners[0].Host = v },
		"listener cert": func(g *config.Config, a *App, v string) {
			g.Listeners[0].Certificate, g.Listeners[0].Key = "/c/"+v, "/k"
		},
	}
	for place, set := range places {
		for _, v := range hostile {
			if v == "a b" && (place == "header value" || place == "rewrite to" || place == "basic-auth realm" || place == "local message" || place == "basic-auth user") {
				continue // these may hold spaces: they stay quoted (a user name stays in the user file)
			}
			t.Run(place+"/"+v, func(t *testing.T) {
				g, a := fullModel(t)
				set(g, &a, v)
				out, err := Render(g, []App{a}, goldenPaths())
				if err == nil {
					t.Fatalf("Render accepted %q in %s:\n%s", v, place, out.Main)
				}
				if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("want ErrInvalid or ErrUnsupported, got %v", err)
				}
				if strings.HasPrefix(place, "webapp") || strings.HasPrefix(place, "static") || strings.HasPrefix(place, "redirect") ||
					strings.HasPrefix(place, "rewrite") || strings.HasPrefix(place, "revers") || strings.HasPrefix(place, "header") ||
					strings.HasPrefix(place, "basic-auth") || strings.HasPrefix(place, "local") || strings.HasSuffix(place, "-from") {
					if !strings.Contains(err.Error(), `app "all"`) {
						t.Fatalf("error does not name the app: %v", err)
					}
				}
			})
		}
	}
}

// TestRewriteRegexStaysQuoted: regexes may hold nginx's special
// characters; they must stay inside their quoted map key.
func TestRewriteRegexStaysQuoted(t *testing.T) {
	for _, from := range []string{`a;b`, `a{1,2}`, `}`, `x$`, `#x`, `\"`, `\\"; } server { listen 1; #`, `$host`} {
		t.Run(from, func(t *testing.T) {
			g, a := fullModel(t)
			a.Config.Stanzas[3].ReverseProxy.RewriteRequest[0].From = from
			a.Config.Stanzas[3].ReverseProxy.RewriteRequest[0].To = "x"
			out, err := Render(g, []App{a}, goldenPaths())
			if err != nil {
				t.Logf("refused (fine): %v", err)
				return
			}
			ds, comments, err := parseConf(string(out.Main))
			if err != nil {
				t.Fatalf("parsing: %v\n%s", err, out.Main)
			}
			st := &confStats{}
			if err := checkShape(ds, "main", st); err != nil || len(comments) != 1 {
				t.Fatalf("shape: %v, comments %q", err, comments)
			}
			want := `~^(.*?)(` + from + `)(.*)$`
			if !strings.Contains(mapKeys(ds), "\x00"+want+"\x00") {
				t.Fatalf("map key %q not found intact", want)
			}
		})
	}
}

func mapKeys(ds []directive) string {
	var b strings.Builder
	b.WriteString("\x00")
	var walk func([]directive)
	walk = func(ds []directive) {
		for _, d := range ds {
			if d.name == "map" {
				for _, e := range d.block {
					b.WriteString(e.name + "\x00")
				}
			}
			walk(d.block)
		}
	}
	walk(ds)
	return b.String()
}
