package nginx

import (
	"bytes"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

const testResponder = 43999

func maintenancePaths(mapped bool) Paths {
	p := goldenPaths()
	p.Mapped = mapped
	p.Maintenance, p.MaintenanceDir = testResponder, "/srv/keter/etc/maintenance"
	return p
}

// maintenanceApps: shop (two webapps, a wildcard host) and docs (static
// files) are in maintenance, blog is not.
func maintenanceApps(on bool) []App {
	shop := app("shop", one(map[int]int{0: 43124, 1: 43126}), webapp("shop.example.com", "*.shop.example.com"), webapp("api.example.com"))
	shop.Fronts = one(map[int]int{0: 43125, 1: 43127})
	docs := app("docs", nil, bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"docs.example.com"}}})
	blog := app("blog", one(map[int]int{0: 43128}), webapp("blog.example.com"))
	blog.Fronts = one(map[int]int{0: 43129})
	if on {
		shop.Maintenance = &Maintenance{Message: "back at 5"}
		docs.Maintenance = &Maintenance{}
	}
	return []App{shop, docs, blog}
}

// TestRenderMaintenanceGolden: the responder, the host → page map, and a
// static site in maintenance proxying to it; mapped webapps in
// maintenance render as they do outside it.
func TestRenderMaintenanceGolden(t *testing.T) {
	g := globalConfig(t, "healthcheck-path: /keter-health\n")
	out, err := Render(g, maintenanceApps(true), maintenancePaths(true))
	if err != nil {
		t.Fatal(err)
	}
	got := renderText(out)
	path := filepath.Join("testdata", "golden", "maintenance.conf")
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
		t.Errorf("rendered config differs from %s (run go test ./nginx -run TestRenderMaintenanceGolden -update and review the diff):\n%s", path, got)
	}
	ds, _, err := parseConf(string(out.Main))
	if err != nil {
		t.Fatal(err)
	}
	st := &confStats{}
	if err := checkShape(ds, "main", st); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listen 127.0.0.1:43999;", `"shop.example.com" "app-shop";`, `"~^[^.]+\\.shop\\.example\\.com$" "app-shop";`,
		`"blog.example.com" "app-blog";`, "add_header Retry-After 120 always;", "return 503;",
		"try_files /$keter_maintenance_page.html /default.html =503;", "proxy_pass http://127.0.0.1:43999;",
	} {
		if !strings.Contains(string(out.Main), want) {
			t.Errorf("config lacks %q", want)
		}
	}
	if n := strings.Count(string(out.Main), "proxy_pass http://127.0.0.1:43999;"); n != 1 {
		t.Errorf("%d sites proxy to the responder, want only docs' (mapped webapps go there by the map)", n)
	}

	// nginx itself accepts it.
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	dir := t.TempDir()
	p := maintenancePaths(false)
	p.Prefix, p.PidFile, p.MaintenanceDir, p.User = dir, filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "maintenance"), ""
	out, err = Render(g, maintenanceApps(true), p)
	if err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(conf, out.Main, 0o644); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", conf).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s\n%s", err, b, out.Main)
	}
}

// TestMaintenanceConfigChanges: behind a port map, a webapp going into
// maintenance changes no config (no reload); a static site, or any site
// without a map, does.
func TestMaintenanceConfigChanges(t *testing.T) {
	g := globalConfig(t, "")
	render := func(apps []App, mapped bool) string {
		out, err := Render(g, apps, maintenancePaths(mapped))
		if err != nil {
			t.Fatal(err)
		}
		return string(out.Main)
	}
	webOnly := func(on bool) []App {
		a := maintenanceApps(on)
		return []App{a[0], a[2]}
	}
	if render(webOnly(false), true) != render(webOnly(true), true) {
		t.Error("mapped: a webapp's maintenance changed the config")
	}
	if off, on := render(webOnly(false), false), render(webOnly(true), false); off == on || strings.Count(on, "proxy_pass http://127.0.0.1:43999;") != 2 {
		t.Errorf("without a map: %d sites proxy to the responder, want shop's two", strings.Count(on, "proxy_pass http://127.0.0.1:43999;"))
	}
	// Behind a map the other stanzas are gated ahead: no config change.
	if on := render(maintenanceApps(true), true); render(maintenanceApps(false), true) != on {
		t.Error("mapped: a static site's maintenance changed the config")
	} else if !strings.Contains(on, `if (-f "/srv/keter/etc/maintenance/app-docs.on" )`) || !strings.Contains(on, "error_page 503 = @keter_maintenance;") {
		t.Error("mapped: the static site has no maintenance gate")
	}
	// No responder, no maintenance server.
	out, err := Render(g, maintenanceApps(true), goldenPaths())
	if err != nil || strings.Contains(string(out.Main), "keter_maintenance") || strings.Contains(string(out.Main), "return 503") {
		t.Errorf("rendered maintenance without a responder port (err %v)", err)
	}
	p := maintenancePaths(true)
	p.MaintenanceDir = "relative/dir"
	if _, err := Render(g, nil, p); err == nil {
		t.Error("a relative page folder was accepted")
	}
}

func TestMapMaintenance(t *testing.T) {
	want := map[int]int{43125: 43124, 43127: 43126, 43129: 43128}
	got := maps.Clone(want)
	mapMaintenance(got, maintenanceApps(false), testResponder)
	if !maps.Equal(got, want) {
		t.Fatalf("no app in maintenance: %v, want %v", got, want)
	}
	mapMaintenance(got, maintenanceApps(true), testResponder)
	if exp := map[int]int{43125: testResponder, 43127: testResponder, 43129: 43128}; !maps.Equal(got, exp) {
		t.Fatalf("shop in maintenance: %v, want %v", got, exp)
	}
	// A stanza whose unit stopped has no entry; in maintenance it has one.
	got = map[int]int{}
	mapMaintenance(got, maintenanceApps(true)[:1], testResponder)
	if len(got) != 2 {
		t.Fatalf("fronts of stopped stanzas in maintenance: %v, want both at the responder", got)
	}
	got = map[int]int{}
	mapMaintenance(got, maintenanceApps(true), 0)
	if len(got) != 0 {
		t.Fatalf("without a responder: %v", got)
	}
}

func TestPage(t *testing.T) {
	dir := t.TempDir()
	a := App{Name: "shop", Dir: dir, Maintenance: &Maintenance{Message: "Back at <5pm> & \"soon\"\nSorry."}}
	page, own, err := Page(a)
	if err != nil || own {
		t.Fatalf("keter's page: own=%v err=%v", own, err)
	}
	if !strings.Contains(string(page), "Back at &lt;5pm&gt; &amp; &#34;soon&#34;<br>\nSorry.") || strings.Contains(string(page), "<5pm>") {
		t.Fatalf("keter's page does not carry the message escaped:\n%s", page)
	}
	a.Maintenance.Message = ""
	if page, _, _ := Page(a); !strings.Contains(string(page), "will be back soon") {
		t.Fatalf("keter's page without a message:\n%s", page)
	}

	own1 := "<html><body>Our own page. <!--keter:message--></body></html>"
	writeFile(t, filepath.Join(dir, bundle.MaintenancePage), own1)
	a.Maintenance.Message = "<b>2h</b>"
	page, own, err = Page(a)
	if err != nil || !own || string(page) != "<html><body>Our own page. &lt;b&gt;2h&lt;/b&gt;</body></html>" {
		t.Fatalf("own page: %q own=%v err=%v", page, own, err)
	}

	// A page keter cannot use gives keter's own, with the reason.
	writeFile(t, filepath.Join(dir, bundle.MaintenancePage), strings.Repeat("x", bundle.MaxMaintenancePage+1))
	if page, own, err := Page(a); err == nil || own || !strings.Contains(string(page), "Down for maintenance") {
		t.Fatalf("an oversized own page: own=%v err=%v", own, err)
	}
	os.Remove(filepath.Join(dir, bundle.MaintenancePage))
	if err := os.Mkdir(filepath.Join(dir, bundle.MaintenancePage), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, own, err := Page(a); err == nil || own {
		t.Fatalf("a folder at the page's path: own=%v err=%v", own, err)
	}
}

// TestPagesFiles: pages are written before a switch and removed after
// one, and the default page always exists.
func TestPagesFiles(t *testing.T) {
	g := globalConfig(t, "")
	g.Root = t.TempDir()
	m := New(g, nil, slog.New(slog.DiscardHandler), WithMaintenance(testResponder))
	dir := filepath.Join(g.Root, "etc", "maintenance")
	if m.paths.MaintenanceDir != dir || m.paths.Maintenance != testResponder {
		t.Fatalf("paths %+v", m.paths)
	}
	apps := maintenanceApps(true)
	for i := range apps {
		apps[i].Dir = t.TempDir()
	}
	if err := m.writePages(apps); err != nil {
		t.Fatal(err)
	}
	names := func() []string {
		es, _ := os.ReadDir(dir)
		var n []string
		for _, e := range es {
			n = append(n, e.Name())
		}
		return n
	}
	if got := strings.Join(names(), " "); got != "app-docs.html app-shop.html default.html" {
		t.Fatalf("pages %q", got)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "app-shop.html")); !strings.Contains(string(b), "back at 5") {
		t.Fatalf("shop's page:\n%s", b)
	}
	if fi, err := os.Stat(filepath.Join(dir, "app-shop.html")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("shop's page must be readable by nginx's workers: %v %v", fi.Mode(), err)
	}
	// Out of maintenance the page stays (for requests on their way);
	// removed, it goes.
	apps[0].Maintenance = nil
	m.cleanPages(apps)
	if got := strings.Join(names(), " "); got != "app-docs.html app-shop.html default.html" {
		t.Fatalf("pages after shop's maintenance ended: %q", got)
	}
	m.cleanPages(apps[1:])
	if got := strings.Join(names(), " "); got != "app-docs.html default.html" {
		t.Fatalf("pages after shop was removed: %q", got)
	}
}

func TestMapFronts(t *testing.T) {
	for _, tc := range []struct {
		name          string
		fronts, ports []int
		down, resting map[int]bool
		want          map[int]int
	}{
		{"one instance, three spares", []int{1, 2, 3, 4}, []int{10}, nil, nil, map[int]int{1: 10, 2: 10, 3: 10, 4: 10}},
		{"two instances", []int{1, 2, 3, 4}, []int{10, 20}, nil, nil, map[int]int{1: 10, 2: 20, 3: 10, 4: 20}},
		{"three instances", []int{1, 2, 3, 4}, []int{10, 20, 30}, nil, nil, map[int]int{1: 10, 2: 20, 3: 30, 4: 10}},
		{"one down: its front goes nowhere, spares to the others", []int{1, 2, 3, 4}, []int{10, 20}, map[int]bool{10: true}, nil, map[int]int{2: 20, 3: 20, 4: 20}},
		{"all down", []int{1, 2}, []int{10}, map[int]bool{10: true}, nil, map[int]int{}},
		{"more instances than fronts", []int{1}, []int{10, 20}, nil, nil, map[int]int{1: 10}},
		{"one resting: its front and the spares go to the others", []int{1, 2, 3, 4}, []int{10, 20, 30}, nil, map[int]bool{20: true}, map[int]int{1: 10, 2: 30, 3: 30, 4: 10}},
		{"resting beside one down", []int{1, 2, 3, 4}, []int{10, 20, 30}, map[int]bool{10: true}, map[int]bool{20: true}, map[int]int{2: 30, 3: 30, 4: 30}},
		{"all resting: each keeps its own", []int{1, 2, 3}, []int{10, 20}, nil, map[int]bool{10: true, 20: true}, map[int]int{1: 10, 2: 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := map[int]int{}
			mapFronts(got, tc.fronts, tc.ports, tc.down, tc.resting)
			if !maps.Equal(got, tc.want) {
				t.Fatalf("got %v, want %v", got, tc.want)
			}
		})
	}
}
