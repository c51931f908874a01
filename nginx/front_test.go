package nginx

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// frontCases are the golden cases of a stanza's limits, error pages and
// trusted proxies; they join renderCases, so nginx -t checks them too.
var frontCases = []renderCase{
	{"front-limits", func(t testing.TB, tls string) (*config.Config, []App) {
		web := webapp("upload.example.com")
		web.Front = bundle.Front{MaxBodySize: "1g", ConnectTimeout: 5 * time.Second}
		stream := webapp("stream.example.com")
		stream.Front = bundle.Front{NoBuffering: true, NoGzip: true, ConnectTimeout: 1500 * time.Millisecond}
		st := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"files.example.com"}},
			Front: bundle.Front{MaxBodySize: "0", NoGzip: true}}
		rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com"},
			Front: bundle.Front{MaxBodySize: "512k", NoBuffering: true}}
		return globalConfig(t, "proxy-exception-response-file: /etc/keter/down.html\n"), []App{app("limits", one(map[int]int{0: 43800, 1: 43801}), web, stream, st, rp)}
	}},
	{"trusted-proxies", func(t testing.TB, tls string) (*config.Config, []App) {
		s := webapp("secure.example.com")
		s.RequiresSecure = true
		st := bundle.Stanza{Type: bundle.TypeStaticFiles, RequiresSecure: true, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"static.example.com"}}}
		rd := bundle.Stanza{Type: bundle.TypeRedirect, RequiresSecure: true, Redirect: &bundle.Redirect{Hosts: []string{"old.example.com"},
			Actions: []bundle.RedirectAction{{Path: "/a", URL: "https://new.example.com/a"}, {URL: "https://new.example.com/"}}}}
		g := globalConfig(t, "ip-from-header: true\nhealthcheck-path: /lb-health\ntrusted-proxies: [10.0.0.0/8, 192.168.1.7, \"2001:db8::1/32\"]\n"+
			"listeners:\n  - port: 80\n  - port: 443\n    certificate: "+tls+"/cert.pem\n    key: "+tls+"/key.pem\n")
		return g, []App{app("lb", one(map[int]int{0: 43900}), s, st, rd)}
	}},
}

func init() { renderCases = append(renderCases, frontCases...) }

// TestFrontRefusesHostile puts values carrying nginx syntax into each new
// key: the bundle's body size, the operator's trusted proxies, and an
// app name that becomes the error page folder.
func TestFrontRefusesHostile(t *testing.T) {
	places := map[string]func(g *config.Config, a *App, v string){
		"max-body-size":   func(g *config.Config, a *App, v string) { a.Config.Stanzas[0].Front.MaxBodySize = "1m" + v },
		"static max-body": func(g *config.Config, a *App, v string) { a.Config.Stanzas[1].Front.MaxBodySize = v },
		"trusted-proxies": func(g *config.Config, a *App, v string) { g.TrustedProxies = []string{"10.0.0.0/8", "10.1.0.0/16" + v} },
		"trusted address": func(g *config.Config, a *App, v string) { g.TrustedProxies = []string{v} },
		"app name":        func(g *config.Config, a *App, v string) { a.Name = "all" + v },
	}
	for place, set := range places {
		for _, v := range append(hostile, "/../../etc", "x", "10x") {
			if place == "app name" && (v == "x" || v == "10x") {
				continue // fine app names
			}
			t.Run(place+"/"+v, func(t *testing.T) {
				g, a := fullModel(t)
				set(g, &a, v)
				out, err := Render(g, []App{a}, goldenPaths())
				if err == nil {
					t.Fatalf("Render accepted %q in %s:\n%s", v, place, out.Main)
				}
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("want ErrInvalid, got %v", err)
				}
			})
		}
	}
	g, a := fullModel(t)
	a.Config.Stanzas[0].Front.ConnectTimeout = 90 * time.Second
	if _, err := Render(g, []App{a}, goldenPaths()); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "connect-timeout") {
		t.Fatalf("a connect-timeout beyond nginx's 75s: err %v", err)
	}
}

// TestErrorPagesPrecedence: the maintenance gate keeps its 503; every
// other status goes to the bundle's page, then the global file.
func TestErrorPagesPrecedence(t *testing.T) {
	g := globalConfig(t, "proxy-exception-response-file: /etc/keter/down.html\n")
	rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: 9000, ReversingHost: "rp.example.com"}}
	p := goldenPaths()
	p.Maintenance, p.MaintenanceDir, p.Mapped = 43000, "/srv/keter/etc/maintenance", true
	out, err := Render(g, []App{app("gated", nil, rp)}, p)
	if err != nil {
		t.Fatal(err)
	}
	inc := string(out.Include)
	for _, want := range []string{
		"error_page 503 = @keter_maintenance;",
		"error_page 502 504 /.keter-internal/error;",
		`root "/srv/keter/etc/errors";`,
		"try_files /gated/$status.html /.keter-internal/proxy-exception;",
	} {
		if !strings.Contains(inc, want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if strings.Contains(inc, "error_page 502 503") {
		t.Error("a gated site's 503 must stay the maintenance gate's")
	}
	if i, j := strings.Index(inc, "error_page 503 = @keter_maintenance"), strings.Index(inc, "error_page 502"); i > j {
		t.Error("the maintenance gate's error_page must come first")
	}
}

// TestWriteErrorPages copies the pages a bundle ships and nothing a
// bundle (or its running app) could point elsewhere with.
func TestWriteErrorPages(t *testing.T) {
	root := t.TempDir()
	bundleDir := filepath.Join(root, "bundle")
	secret := filepath.Join(root, "secret.html")
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(secret, []byte("secret"), 0o600))
	must(os.MkdirAll(filepath.Join(bundleDir, "config", "errors"), 0o755))
	must(os.WriteFile(filepath.Join(bundleDir, "config", "errors", "502.html"), []byte("<p>down</p>"), 0o644))
	must(os.Symlink(secret, filepath.Join(bundleDir, "config", "errors", "503.html")))
	must(syscall.Mkfifo(filepath.Join(bundleDir, "config", "errors", "504.html"), 0o644))
	m := &Manager{paths: Paths{ErrorDir: filepath.Join(root, "errors")}, log: slog.New(slog.DiscardHandler)}
	dst := filepath.Join(root, "errors", "app")
	must(os.MkdirAll(dst, 0o755))
	must(os.WriteFile(filepath.Join(dst, "503.html"), []byte("stale"), 0o644))
	apps := []App{{Name: "app", Dir: bundleDir}}
	must(m.writeErrorPages(apps))
	if b, err := os.ReadFile(filepath.Join(dst, "502.html")); err != nil || string(b) != "<p>down</p>" {
		t.Fatalf("502.html: %q %v", b, err)
	}
	for _, c := range []string{"503", "504"} {
		if _, err := os.Stat(filepath.Join(dst, c+".html")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s.html (a link, a FIFO) was copied or left: %v", c, err)
		}
	}

	// The pages of a version are copied once: the app writing into its
	// own folder later changes nothing nginx serves.
	must(os.WriteFile(filepath.Join(bundleDir, "config", "errors", "502.html"), []byte("<p>written by the app</p>"), 0o644))
	must(m.writeErrorPages(apps))
	if b, err := os.ReadFile(filepath.Join(dst, "502.html")); err != nil || string(b) != "<p>down</p>" {
		t.Fatalf("502.html after the app rewrote its copy: %q %v", b, err)
	}

	// New versions: a folder on the way that is a link; a page larger than allowed.
	version := func(n int) string {
		d := filepath.Join(root, fmt.Sprintf("bundle-%d", n))
		must(os.MkdirAll(filepath.Join(d, "config"), 0o755))
		return d
	}
	must(os.MkdirAll(filepath.Join(root, "elsewhere"), 0o755))
	must(os.WriteFile(filepath.Join(root, "elsewhere", "502.html"), []byte("outside"), 0o644))
	apps[0].Dir = version(2)
	must(os.Symlink(filepath.Join(root, "elsewhere"), filepath.Join(apps[0].Dir, "config", "errors")))
	must(m.writeErrorPages(apps))
	if _, err := os.Stat(filepath.Join(dst, "502.html")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("502.html through a linked folder: %v", err)
	}
	apps[0].Dir = version(3)
	must(os.MkdirAll(filepath.Join(apps[0].Dir, "config", "errors"), 0o755))
	must(os.WriteFile(filepath.Join(apps[0].Dir, "config", "errors", "504.html"), make([]byte, bundle.MaxErrorPage+1), 0o644))
	must(m.writeErrorPages(apps))
	if _, err := os.Stat(filepath.Join(dst, "504.html")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an oversized 504.html was copied: %v", err)
	}

	// A removed app's folder goes.
	m.cleanErrorPages(nil)
	if _, err := os.Stat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the page folder of a removed app is left: %v", err)
	}
}

// FuzzRenderFront: whatever body size and trusted proxy reach Render, it
// refuses them or writes a config of the expected shape.
func FuzzRenderFront(f *testing.F) {
	f.Add("10m", "10.0.0.0/8")
	f.Add("10x", "10.0.0.0/8; } server {")
	f.Add("1m;", "::1")
	f.Add("0", "2001:db8::/32")
	f.Add("1g\n", "fe80::1%eth0")
	f.Fuzz(func(t *testing.T, size, proxy string) {
		g, a := fullModel(t)
		g.TrustedProxies = []string{proxy}
		a.Config.Stanzas[0].Front.MaxBodySize = size
		out, err := Render(g, []App{a}, goldenPaths())
		if err != nil {
			return
		}
		ds, comments, err := parseConf(string(out.Main))
		if err != nil || len(comments) != 1 {
			t.Fatalf("parsing: %v %q\n%s", err, comments, out.Main)
		}
		if err := checkShape(ds, "main", &confStats{}); err != nil {
			t.Fatalf("%v\n%s", err, out.Main)
		}
		if bundle.ValidBodySize(size) != nil {
			t.Fatalf("accepted body size %q", size)
		}
	})
}
