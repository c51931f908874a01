package nginx

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite golden files under testdata/golden")

func i64(v int64) *int64 { return &v }

// globalConfig parses a keter-config.yaml through the real parser, so
// defaults are the ones keter runs with.
func globalConfig(t testing.TB, yaml string) *config.Config {
	t.Helper()
	g, _, err := config.Parse([]byte("root: /srv/keter\n"+yaml), "/etc/keter")
	if err != nil {
		t.Fatalf("parsing config: %v\n%s", err, yaml)
	}
	return g
}

func webapp(hosts ...string) bundle.Stanza {
	return bundle.Stanza{Type: bundle.TypeWebApp, WebApp: &bundle.WebApp{Exec: bundle.Exec{Path: "bin/app"}, Hosts: hosts}}
}

func app(name string, ports map[int][]int, stanzas ...bundle.Stanza) App {
	return App{Name: name, Dir: "/srv/keter/temp/" + name + "-1", Config: &bundle.AppConfig{Stanzas: stanzas}, Ports: ports}
}

type renderCase struct {
	name string
	// build gets the folder holding cert.pem, key.pem, chain.pem, a.pem,
	// a.key, b.pem, b.key (real files in the nginx -t test).
	build func(t testing.TB, tls string) (*config.Config, []App)
}

var renderCases = []renderCase{
	{"empty", func(t testing.TB, tls string) (*config.Config, []App) {
		return globalConfig(t, ""), nil
	}},
	{"webapp", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("shop", one(map[int]int{0: 43124, 1: 43125}),
			webapp("shop.example.com", "*.shop.example.com", "www.shop.example.com"),
			webapp("api.example.com"))
		a.Config.Stanzas[1].WebApp.ConnectionTimeBound = i64(2_500_000)
		a.Config.Stanzas[1].WebApp.Middleware = []bundle.Middleware{
			{Name: "autohead"},
			{Name: "headers", Config: map[string]any{"X-Frame-Options": "DENY", "Cache-Control": "no-store, private"}},
		}
		bg := bundle.Stanza{Type: bundle.TypeBackground, Background: &bundle.Background{Exec: bundle.Exec{Path: "bin/worker"}}}
		b := app("blog", one(map[int]int{1: 28120}), bg, webapp("blog.example.com"))
		return globalConfig(t, "connection-time-bound: 0\n"), []App{a, b}
	}},
	{"static-files", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("docs", nil,
			bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"docs.example.com"}, DirectoryListing: true}},
			bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "assets/img", Hosts: []string{"img.example.com"}}})
		return globalConfig(t, ""), []App{a}
	}},
	{"redirect", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("moved", nil,
			bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"old.example.com"}, Actions: []bundle.RedirectAction{
				{Path: "/about", URL: "https://new.example.com/about-us"},
				{Path: "/shop", Host: "shop.example.com", Secure: true},
				{Path: "/about", URL: "https://ignored.example.com/"},
				{Host: "new.example.com", Port: 8080},
				{Path: "/never", URL: "https://never.example.com/"},
			}}},
			bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"only.example.com"}, Status: 301, Actions: []bundle.RedirectAction{
				{Path: "/x", URL: "http://x.example.com/y?z=1"},
			}}})
		return globalConfig(t, ""), []App{a}
	}},
	{"reverse-proxy", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("rp", nil,
			bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{
				ReversedHost: "127.0.0.1", ReversedPort: 8443, ReversedSSL: true, ReversingHost: "secure-rp.example.com",
				Timeout: i64(30_000_000),
				RewriteRequest: []bundle.Rewrite{
					{Header: "X-Original", From: `^/app/(.*)$`, To: `/\1`},
				},
				RewriteResponse: []bundle.Rewrite{
					{Header: "Location", From: `http://127\.0\.0\.1:8443`, To: `https://secure-rp.example.com`},
				},
			}},
			bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{
				ReversedHost: "localhost", ReversedPort: 80, ReversingHost: "plain-rp.example.com", PreserveHost: true,
			}})
		return globalConfig(t, ""), []App{a}
	}},
	{"instances", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("many", map[int][]int{0: {43124, 43125, 43126}}, webapp("many.example.com"))
		return globalConfig(t, ""), []App{a}
	}},
	{"requires-secure", func(t testing.TB, tls string) (*config.Config, []App) {
		s := webapp("secure.example.com")
		s.RequiresSecure = true
		a := app("sec", one(map[int]int{0: 43200}), s)
		g := globalConfig(t, "external-https-port: 8443\nlisteners:\n  - port: 80\n  - port: 8443\n    certificate: "+tls+"/cert.pem\n    key: "+tls+"/key.pem\n")
		return g, []App{a}
	}},
	{"tls-listeners", func(t testing.TB, tls string) (*config.Config, []App) {
		a := app("web", one(map[int]int{0: 43300}), webapp("web.example.com"))
		g := globalConfig(t, `listeners:
  - host: "*"
    port: 80
  - host: 127.0.0.1
    port: 8080
  - host: "*"
    port: 443
    certificate: `+tls+`/cert.pem
    key: `+tls+`/key.pem
    chain-certificates: [`+tls+`/chain.pem]
    session: true
`)
		return g, []App{a}
	}},
	{"sni", func(t testing.TB, tls string) (*config.Config, []App) {
		a := webapp("a.example.com")
		a.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: tls + "/a.pem", Key: tls + "/a.key", ChainCertificates: []string{tls + "/chain.pem"}}
		b := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "www", Hosts: []string{"b.example.com"},
			SSL: bundle.SSL{Enabled: true, Certificate: tls + "/b.pem", Key: tls + "/b.key"}}}
		c := webapp("c.example.com")
		c.WebApp.SSL = bundle.SSL{Enabled: true}
		g := globalConfig(t, "listeners:\n  - port: 80\n  - port: 443\n    certificate: "+tls+"/cert.pem\n    key: "+tls+"/key.pem\n")
		return g, []App{app("sni", one(map[int]int{0: 43400, 2: 43401}), a, b, c)}
	}},
	{"response-files", func(t testing.TB, tls string) (*config.Config, []App) {
		g := globalConfig(t, "unknown-host-response-file: unknown.html\nmissing-host-response-file: /etc/keter/missing.html\nproxy-exception-response-file: down.html\n")
		a := app("web", one(map[int]int{0: 43500}), webapp("web.example.com"))
		rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com"}}
		return g, []App{a, app("rp", nil, rp)}
	}},
	{"healthcheck", func(t testing.TB, tls string) (*config.Config, []App) {
		g := globalConfig(t, "healthcheck-path: /keter-health\n")
		rd := bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"r.example.com"}, Actions: []bundle.RedirectAction{
			{Path: "/keter-health", URL: "https://elsewhere.example.com/"},
			{URL: "https://elsewhere.example.com/"},
		}}}
		return g, []App{app("web", one(map[int]int{0: 43600}), webapp("web.example.com"), rd)}
	}},
	{"basic-auth", func(t testing.TB, tls string) (*config.Config, []App) {
		g := globalConfig(t, "healthcheck-path: /keter-health\n")
		web := webapp("staging.example.com")
		web.WebApp.Middleware = []bundle.Middleware{{Name: "basic-auth", Config: map[string]any{
			"realm": "Staging area", "hashed-creds": map[string]any{"bob": testHashes["bcrypt"], "alice": testHashes["sha512"]}}}}
		st := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"docs.example.com"},
			Middleware: []bundle.Middleware{{Name: "basic-auth", Config: map[string]any{"htpasswd": "/etc/keter/docs.htpasswd"}}}}}
		rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com",
			Middleware: []bundle.Middleware{{Name: "basic-auth", Config: map[string]any{"hashed-creds": map[string]any{"ops": testHashes["apr1"]}}}}}}
		return g, []App{app("staging", one(map[int]int{0: 43800}), web, st, rp)}
	}},
	{"local", func(t testing.TB, tls string) (*config.Config, []App) {
		web := webapp("admin.example.com")
		web.WebApp.Middleware = []bundle.Middleware{{Name: "local", Config: map[string]any{}}}
		st := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"internal.example.com"},
			Middleware: []bundle.Middleware{{Name: "local", Config: map[string]any{"status": 403, "message": "Host only"}}}}}
		return globalConfig(t, ""), []App{app("admin", one(map[int]int{0: 43810}), web, st)}
	}},
	{"allow-deny", func(t testing.TB, tls string) (*config.Config, []App) {
		web := webapp("office.example.com")
		web.WebApp.Access = bundle.Access{AllowFrom: []string{"192.0.2.0/24", "2001:db8::/32", "198.51.100.7/32"}, DenyFrom: []string{"192.0.2.66/32"}}
		rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com",
			Access: bundle.Access{DenyFrom: []string{"203.0.113.0/24"}}}}
		return globalConfig(t, ""), []App{app("office", one(map[int]int{0: 43820}), web, rp)}
	}},
	{"rate-limiter", func(t testing.TB, tls string) (*config.Config, []App) {
		throttle := func(name string, limit, period int, algo string) any {
			return map[string]any{"name": name, "limit": limit, "period": period, "algorithm": algo, "identifier_by": "ip"}
		}
		web := webapp("api.example.com")
		web.WebApp.Middleware = []bundle.Middleware{{Name: "rate-limiter", Config: map[string]any{"zone_by": "default",
			"throttles": []any{throttle("burst", 20, 1, "TokenBucket"), throttle("hourly", 1000, 3600, "FixedWindow")}}}}
		st := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"static.example.com"},
			Middleware: []bundle.Middleware{{Name: "rate-limiter", Config: map[string]any{"throttles": []any{throttle("one", 1, 60, "LeakyBucket")}}}}}}
		return globalConfig(t, ""), []App{app("api", one(map[int]int{0: 43830}), web, st)}
	}},
	{"ip-from-header", func(t testing.TB, tls string) (*config.Config, []App) {
		g := globalConfig(t, "ip-from-header: true\nnginx:\n  client-max-body-size: 10m\n")
		return g, []App{app("web", one(map[int]int{0: 43700}), webapp("web.example.com"))}
	}},
}

func goldenPaths() Paths {
	return Paths{Prefix: "/srv/keter/etc/nginx", PidFile: "/srv/keter/etc/nginx/nginx.pid", User: "www-data", IPv6: true, MaxFiles: 65536, ErrorDir: "/srv/keter/etc/errors"}
}

func renderText(out *Output) []byte {
	var b bytes.Buffer
	b.Write(out.Main)
	keys := make([]string, 0, len(out.Concat))
	for k := range out.Concat {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b.WriteString("# concat " + k + " <- " + strings.Join(out.Concat[k], " ") + "\n")
	}
	for _, k := range sortedKeys(out.Auth) {
		b.WriteString("# auth " + k + "\n")
		for _, l := range strings.SplitAfter(string(out.Auth[k]), "\n") {
			if l != "" {
				b.WriteString("#   " + l)
			}
		}
	}
	return b.Bytes()
}

func TestRenderGolden(t *testing.T) {
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			g, apps := tc.build(t, "/etc/keter/tls")
			out, err := Render(g, apps, goldenPaths())
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := renderText(out)
			path := filepath.Join("testdata", "golden", tc.name+".conf")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered config differs from %s (run go test ./nginx -run TestRenderGolden -update and review the diff):\n%s", path, got)
			}
			// The include must be the http-level body of the whole conf.
			inc := strings.TrimPrefix(string(out.Include), header)
			for _, l := range strings.Split(strings.TrimSpace(inc), "\n") {
				if !strings.Contains(string(out.Main), "    "+l+"\n") {
					t.Fatalf("include line %q is not inside the whole conf", l)
				}
			}
			// Same input, same bytes, whatever the order of apps.
			rev := make([]App, len(apps))
			for i := range apps {
				rev[len(apps)-1-i] = apps[i]
			}
			again, err := Render(g, rev, goldenPaths())
			if err != nil || !bytes.Equal(renderText(again), got) {
				t.Fatalf("rendering is not deterministic (err %v)", err)
			}
			ds, comments, err := parseConf(string(out.Main))
			if err != nil {
				t.Fatalf("parsing rendered config: %v", err)
			}
			if len(comments) != 1 {
				t.Fatalf("want only the header comment, got %q", comments)
			}
			if err := checkShape(ds, "main", &confStats{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRenderedConfigsPassNginxTest feeds every golden case, with real
// certificate files, to `nginx -t`.
func TestRenderedConfigsPassNginxTest(t *testing.T) {
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	dir := t.TempDir()
	tls := filepath.Join(dir, "tls")
	writeTestCerts(t, tls)
	for _, tc := range renderCases {
		t.Run(tc.name, func(t *testing.T) {
			g, apps := tc.build(t, tls)
			p := Paths{Prefix: filepath.Join(dir, tc.name), PidFile: filepath.Join(dir, tc.name, "nginx.pid"), Control: true, ErrorDir: filepath.Join(dir, "errors")}
			out, err := Render(g, apps, p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := buildConcat(out.Concat); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(p.Prefix, 0o755); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(p.Prefix, "nginx.conf")
			if err := os.WriteFile(conf, out.Main, 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "-t", "-q", "-p", p.Prefix, "-c", conf)
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v\n%s\n%s", err, b, out.Main)
			}
		})
	}
}

func TestRenderRefusesDuplicateHosts(t *testing.T) {
	g := globalConfig(t, "")
	a := app("first", one(map[int]int{0: 43124}), webapp("x.example.com"))
	b := app("second", one(map[int]int{0: 43125}), webapp("y.example.com", "X.example.com"))
	_, err := Render(g, []App{b, a}, goldenPaths())
	if !errors.Is(err, ErrDuplicateHost) || !strings.Contains(err.Error(), `"first"`) || !strings.Contains(err.Error(), `"second"`) {
		t.Fatalf("want a duplicate host error naming both apps, got %v", err)
	}
	c := app("third", one(map[int]int{0: 1, 1: 2}), webapp("z.example.com"), webapp("z.example.com"))
	if _, err := Render(g, []App{c}, goldenPaths()); !errors.Is(err, ErrDuplicateHost) {
		t.Fatalf("want a duplicate host error inside one app, got %v", err)
	}
}

func TestRenderRefusesUnsupported(t *testing.T) {
	g := globalConfig(t, "")
	for _, tc := range []struct {
		name string
		st   bundle.Stanza
	}{
		{"rate-limiter by header", func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.Middleware = []bundle.Middleware{{Name: "rate-limiter", Config: map[string]any{"throttles": []any{
				map[string]any{"name": "k", "limit": 1, "period": 1, "algorithm": "FixedWindow", "identifier_by": map[string]any{"header": "X-Key"}}}}}}
			return s
		}()},
		{"rate-limiter slower than nginx", func() bundle.Stanza {
			s := webapp("a.example.com")
			s.WebApp.Middleware = []bundle.Middleware{{Name: "rate-limiter", Config: map[string]any{"throttles": []any{
				map[string]any{"name": "k", "limit": 1, "period": 3600, "algorithm": "FixedWindow", "identifier_by": "ip"}}}}}
			return s
		}()},
		{"redirect status 200", bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"a.example.com"}, Status: 200,
			Actions: []bundle.RedirectAction{{URL: "http://b.example.com/"}}}}},
		{"rewrite Host", bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 1,
			ReversingHost: "a.example.com", RewriteRequest: []bundle.Rewrite{{Header: "Host", From: "a", To: "b"}}}}},
		{"too many groups", bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 1,
			ReversingHost: "a.example.com", RewriteRequest: []bundle.Rewrite{{Header: "X-A", From: "(a)(b)(c)(d)(e)(f)", To: "b"}}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Render(g, []App{app("u", one(map[int]int{0: 43124}), tc.st)}, goldenPaths())
			if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), `app "u"`) {
				t.Fatalf("want ErrUnsupported naming the app, got %v", err)
			}
		})
	}
}

// TestDefaultServerOnlyInManagedMode: keter's own nginx claims
// default_server for unknown hosts; inside a system nginx it must not, or
// it clashes with Debian's sites-enabled/default and nginx refuses both.
func TestDefaultServerOnlyInManagedMode(t *testing.T) {
	for _, c := range []struct {
		mode string
		want bool
	}{{"managed", true}, {"system", false}} {
		g := globalConfig(t, "nginx: {mode: "+c.mode+"}\n")
		out, err := Render(g, []App{app("shop", one(map[int]int{0: 43124}), webapp("shop.example.com"))}, goldenPaths())
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Contains(string(out.Include), "default_server"); got != c.want {
			t.Errorf("%s mode: default_server in include = %v, want %v", c.mode, got, c.want)
		}
	}
}

// TestControlServer: the generation follows the config, sits on a server
// only the reserved name reaches, and no bundle may claim that name.
func TestControlServer(t *testing.T) {
	g := globalConfig(t, "")
	p := goldenPaths()
	p.Control = true
	first := []App{app("shop", one(map[int]int{0: 43124}), webapp("shop.example.com"))}
	second := []App{app("shop", one(map[int]int{0: 43125}), webapp("shop.example.com"))}
	a, err := Render(g, first, p)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Render(g, first, p)
	b, _ := Render(g, second, p)
	if a.Generation == "" || a.Generation != again.Generation || a.Generation == b.Generation {
		t.Fatalf("generations %q %q %q: want stable for one config, new for another", a.Generation, again.Generation, b.Generation)
	}
	inc := string(a.Include)
	for _, want := range []string{"server_name " + ControlHost + ";", `return 200 "` + a.Generation + `";`, "deny all;"} {
		if !strings.Contains(inc, want) {
			t.Errorf("include lacks %q", want)
		}
	}
	if off, _ := Render(g, first, goldenPaths()); strings.Contains(string(off.Include), ControlHost) || off.Generation != "" {
		t.Error("control server rendered without Paths.Control")
	}
	if _, err := Render(g, []App{app("evil", one(map[int]int{0: 1}), webapp(ControlHost))}, p); !errors.Is(err, ErrInvalid) {
		t.Fatalf("an app claiming %s: err %v, want ErrInvalid", ControlHost, err)
	}
}

// one gives each stanza one instance.
func one(ports map[int]int) map[int][]int {
	out := make(map[int][]int, len(ports))
	for i, p := range ports {
		out[i] = []int{p}
	}
	return out
}

// BenchmarkRender1000: the config keter renders at each nginx update
// with 1000 webapps live (bench/keterbench's thousand).
func BenchmarkRender1000(b *testing.B) {
	g := globalConfig(b, "")
	apps := make([]App, 1000)
	for i := range apps {
		name := fmt.Sprintf("app%04d", i)
		apps[i] = app(name, map[int][]int{0: {20000 + i}}, webapp(name+".example.com"))
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Render(g, apps, goldenPaths()); err != nil {
			b.Fatal(err)
		}
	}
}
