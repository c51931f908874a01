package nginx

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

func acmePaths(prefix string, waiting ...string) Paths {
	p := goldenPaths()
	p.Prefix = prefix
	p.ACME = &ACME{
		Dir:       prefix + "/acme",
		Fallback:  prefix + "/acme-fallback.pem",
		Challenge: prefix + "/acme-challenge.sock",
		Waiting:   func(h string) bool { return slices.Contains(waiting, h) },
	}
	return p
}

const acmeListeners = "listeners:\n  - port: 80\n  - port: 443\n    acme: true\nacme:\n  email: ops@example.com\n"

var acmeCases = []struct {
	name    string
	waiting []string
	build   func(t testing.TB, tls string) (*config.Config, []App)
}{
	// Every stanza type and extra hosts get certificates; a stanza's own
	// files still win; wildcards fall to the temporary certificate.
	{"acme-listener", nil, func(t testing.TB, tls string) (*config.Config, []App) {
		own := webapp("own.example.com")
		own.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: tls + "/a.pem", Key: tls + "/a.key"}
		static := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "www", Hosts: []string{"static.example.com"}}}
		rd := bundle.Stanza{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"old.example.com"}, Actions: []bundle.RedirectAction{{Host: "shop.example.com", Secure: true}}}}
		rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com"}}
		a := app("shop", one(map[int]int{0: 43124, 1: 43125}), webapp("shop.example.com", "www.shop.example.com", "*.shop.example.com"), own, static, rd, rp)
		return globalConfig(t, acmeListeners), []App{a}
	}},
	// ssl: acme on a TLS listener with the operator's certificate.
	{"acme-ssl-stanza", nil, func(t testing.TB, tls string) (*config.Config, []App) {
		s := webapp("auto.example.com")
		s.WebApp.SSL = bundle.SSL{Enabled: true, ACME: true}
		g := globalConfig(t, "listeners:\n  - port: 80\n  - port: 443\n    certificate: "+tls+"/cert.pem\n    key: "+tls+"/key.pem\nacme:\n  email: ops@example.com\n")
		return g, []App{app("auto", one(map[int]int{0: 43200, 1: 43201}), s, webapp("files.example.com"))}
	}},
	// requires-secure: wait.example.com has no certificate yet and is
	// served over plain HTTP; ready.example.com redirects.
	{"acme-requires-secure", []string{"wait.example.com"}, func(t testing.TB, tls string) (*config.Config, []App) {
		wait, ready := webapp("wait.example.com"), webapp("ready.example.com")
		wait.RequiresSecure, ready.RequiresSecure = true, true
		return globalConfig(t, acmeListeners), []App{app("sec", one(map[int]int{0: 43300, 1: 43301}), wait, ready)}
	}},
}

func TestRenderACMEGolden(t *testing.T) {
	for _, tc := range acmeCases {
		t.Run(tc.name, func(t *testing.T) {
			g, apps := tc.build(t, "/etc/keter/tls")
			out, err := Render(g, apps, acmePaths("/srv/keter/etc/nginx", tc.waiting...))
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			got := renderText(out)
			got = append(got, []byte("# acme hosts "+strings.Join(out.ACMEHosts, " ")+"\n# secure waiting "+strings.Join(out.SecureWaiting, " ")+"\n")...)
			path := filepath.Join("testdata", "golden", tc.name+".conf")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("reading golden file (run with -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("rendered config differs from %s (run go test ./nginx -run TestRenderACMEGolden -update and review the diff):\n%s", path, got)
			}
			ds, _, err := parseConf(string(out.Main))
			if err != nil {
				t.Fatalf("parsing rendered config: %v", err)
			}
			if err := checkShape(ds, "main", &confStats{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRenderACMEProperties states what the golden files show.
func TestRenderACMEProperties(t *testing.T) {
	g, apps := acmeCases[0].build(t, "/etc/keter/tls")
	out, err := Render(g, apps, acmePaths("/srv/keter/etc/nginx"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"old.example.com", "rp.example.com", "shop.example.com", "static.example.com", "www.shop.example.com"}
	if !slices.Equal(out.ACMEHosts, want) {
		t.Errorf("ACME hosts %v, want %v (every stanza type, not the wildcard, not the stanza with its own files)", out.ACMEHosts, want)
	}
	conf := string(out.Main)
	plain := strings.Count(conf, "listen 80;") + strings.Count(conf, "listen 80 default_server;")
	if n := strings.Count(conf, "location ^~ /.well-known/acme-challenge/"); n != plain || n == 0 {
		t.Errorf("%d challenge locations for %d plain servers", n, plain)
	}
	if strings.Count(conf, "ssl_certificate \"/etc/keter/tls/a.pem\"") != 1 {
		t.Error("the stanza with its own certificate does not serve it")
	}

	g, apps = acmeCases[2].build(t, "/etc/keter/tls")
	for _, c := range []struct {
		waiting   []string
		redirects int
	}{{nil, 2}, {[]string{"wait.example.com"}, 1}, {[]string{"wait.example.com", "ready.example.com"}, 0}} {
		out, err := Render(g, apps, acmePaths("/srv/keter/etc/nginx", c.waiting...))
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(out.Main), `return 301 "https://$host$request_uri";`); n != c.redirects {
			t.Errorf("waiting %v: %d requires-secure redirects, want %d", c.waiting, n, c.redirects)
		}
		got := slices.Sorted(slices.Values(out.SecureWaiting))
		if want := slices.Sorted(slices.Values(c.waiting)); !slices.Equal(got, want) {
			t.Errorf("SecureWaiting %v, want %v", got, want)
		}
	}
}

func TestRenderACMERefused(t *testing.T) {
	auto := webapp("auto.example.com")
	auto.WebApp.SSL = bundle.SSL{Enabled: true, ACME: true}
	apps := []App{app("auto", one(map[int]int{0: 43200}), auto)}
	for _, c := range []struct {
		name, yaml string
		acme       bool
		want       string
	}{
		{"ssl: acme without an ACME client", "", false, "set acme.email"},
		{"ssl: acme without a TLS listener", "acme: {email: ops@example.com}\n", true, "no TLS listener"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := goldenPaths()
			if c.acme {
				p = acmePaths("/srv/keter/etc/nginx")
			}
			_, err := Render(globalConfig(t, c.yaml), apps, p)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), `app "auto"`) {
				t.Fatalf("err %v, want ErrInvalid naming the app and %q", err, c.want)
			}
		})
	}
}

// TestACMEConfigsPassNginxTest: nginx accepts variable certificates, the
// map and the unix-socket challenge proxy.
func TestACMEConfigsPassNginxTest(t *testing.T) {
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	dir := t.TempDir()
	tls := filepath.Join(dir, "tls")
	writeTestCerts(t, tls)
	for _, tc := range acmeCases {
		t.Run(tc.name, func(t *testing.T) {
			g, apps := tc.build(t, tls)
			prefix := filepath.Join(dir, tc.name)
			p := acmePaths(prefix, tc.waiting...)
			p.PidFile, p.User, p.Control = filepath.Join(prefix, "nginx.pid"), "", true
			out, err := Render(g, apps, p)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := buildConcat(out.Concat); err != nil {
				t.Fatal(err)
			}
			conf := filepath.Join(prefix, "nginx.conf")
			writeFile(t, conf, string(out.Main))
			if b, err := exec.Command(bin, "-t", "-q", "-p", prefix, "-c", conf).CombinedOutput(); err != nil {
				t.Fatalf("nginx -t: %v\n%s\n%s", err, b, out.Main)
			}
		})
	}
}
