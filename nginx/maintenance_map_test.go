package nginx

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// startMaintenanceFront is startFront with a maintenance responder, and
// ROOT/etc as keter's core makes it: nginx's workers traverse it to the
// pages.
func startMaintenanceFront(t *testing.T, opts ...Option) (*front, int) {
	t.Helper()
	responder := testkit.FreePort(t)
	f := startFront(t, "", append(opts, WithMaintenance(responder))...)
	if err := os.Chmod(filepath.Join(f.root, "etc"), 0o711); err != nil {
		t.Fatal(err)
	}
	return f, responder
}

// maintenanceAnswer checks a maintenance answer: 503, Retry-After, HTML,
// and body containing want.
func maintenanceAnswer(a answer, want string) error {
	switch {
	case a.status != 503:
		return fmt.Errorf("status %d, want 503 (body %.80q)", a.status, a.body)
	case a.header.Get("Retry-After") != strconv.Itoa(RetryAfter):
		return fmt.Errorf("Retry-After %q, want %d", a.header.Get("Retry-After"), RetryAfter)
	case !strings.HasPrefix(a.header.Get("Content-Type"), "text/html"):
		return fmt.Errorf("Content-Type %q", a.header.Get("Content-Type"))
	case !strings.Contains(a.body, want):
		return fmt.Errorf("body lacks %q:\n%s", want, a.body)
	}
	return nil
}

// TestMaintenanceByMap: behind a port map, a webapp goes into and out of
// maintenance with no reload and no failed request for a keep-alive
// client; the health check still answers 200; a static-files site goes
// into maintenance by one reload.
func TestMaintenanceByMap(t *testing.T) {
	testkit.NeedBinary(t, "nft", "apt-get install nftables")
	if os.Geteuid() != 0 {
		testkit.Missing(t, "nftables needs root")
	}
	pm := portmap.New("kt_" + testkit.Token())
	if err := pm.Setup(t.Context()); err != nil {
		testkit.Missing(t, "nftables unusable here: %v", err)
	}
	t.Cleanup(func() { pm.Remove(context.Background()) })
	f, responder := startMaintenanceFront(t, WithPortMap(pm))
	ctx := t.Context()
	base := fmt.Sprintf("http://x:%d", f.port)
	fresh := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	shopHost := map[string]string{"Host": "shop.test"}

	a := backend(t, "a")
	front := testkit.FreePort(t)
	docsDir := filepath.Join(f.root, "temp", "docs-1")
	writeFile(t, filepath.Join(docsDir, "public", "index.html"), "docs index\n")
	shop := App{Name: "shop", Dir: f.root, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("shop.test")}},
		Ports: one(map[int]int{0: portOf(t, a)}), Fronts: one(map[int]int{0: front})}
	docs := App{Name: "docs", Dir: docsDir, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{
		{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"docs.test"}}}}}}
	if err := f.m.Apply(ctx, []App{shop, docs}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base+"/", shopHost); err != nil || got.status != 200 || !strings.HasPrefix(got.body, "app=a ") {
		t.Fatalf("before maintenance: %+v %v", got, err)
	}

	// Keep-alive clients: an answer is the app's or the maintenance page.
	var ok, paged, failed atomic.Int64
	var lastFail atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		kept := client(fmt.Sprintf("127.0.0.1:%d", f.port))
		kept.Transport.(*http.Transport).DisableKeepAlives = false
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				got, err := get(kept, base+"/", shopHost)
				switch {
				case err == nil && got.status == 200 && strings.HasPrefix(got.body, "app=a "):
					ok.Add(1)
				case err == nil && maintenanceAnswer(got, "back &lt;soon&gt;") == nil:
					paged.Add(1)
				default:
					failed.Add(1)
					lastFail.Store(fmt.Sprintf("%+v %v", got, err))
				}
			}
		}()
	}
	reloads := f.m.Reloads()

	for round := range 3 {
		shop.Maintenance = &Maintenance{Message: "back <soon>"}
		if err := f.m.Apply(ctx, []App{shop, docs}); err != nil {
			t.Fatal(err)
		}
		if cur, err := pm.Current(ctx); err != nil || cur[front] != responder {
			t.Fatalf("round %d: map %v %v, want front %d at the responder %d", round, cur, err, front, responder)
		}
		// A request that starts later than SwitchBound after Apply
		// reaches no app: before, nginx may send one on a connection it
		// kept to the app.
		switched := time.Now()
		for i := range 30 {
			start := time.Since(switched)
			got, err := get(fresh, base+"/any/path?q=1", shopHost)
			if err == nil {
				err = maintenanceAnswer(got, "back &lt;soon&gt;")
			}
			if err != nil && (start > SwitchBound+100*time.Millisecond || !strings.HasPrefix(got.body, "app=a ")) {
				t.Fatalf("round %d: request %d, %s after on: %v", round, i, start, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
		req, _ := http.NewRequest("POST", base+"/form", strings.NewReader(strings.Repeat("x", 3<<20)))
		req.Host = "shop.test"
		if resp, err := fresh.Do(req); err != nil || resp.StatusCode != 503 {
			t.Fatalf("a POST with a 3 MB body: %v %v, want 503", resp, err)
		} else {
			resp.Body.Close()
		}
		if got, err := get(fresh, base+"/keter-health", shopHost); err != nil || got.status != 200 {
			t.Fatalf("health check in maintenance: %+v %v, want 200", got, err)
		}
		time.Sleep(200 * time.Millisecond)

		shop.Maintenance = nil
		if err := f.m.Apply(ctx, []App{shop, docs}); err != nil {
			t.Fatal(err)
		}
		// Once Apply returns, every request reaches the app.
		for i := range 20 {
			if got, err := get(fresh, base+"/", shopHost); err != nil || got.status != 200 || !strings.HasPrefix(got.body, "app=a ") {
				t.Fatalf("round %d: request %d after off: %d %.60q %v", round, i, got.status, got.body, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	t.Logf("keep-alive clients: %d app answers, %d maintenance pages, %d failed", ok.Load(), paged.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 || paged.Load() == 0 {
		t.Fatalf("keep-alive clients: %d failed (last: %v), %d app answers, %d maintenance pages", failed.Load(), lastFail.Load(), ok.Load(), paged.Load())
	}
	if n := f.m.Reloads(); n != reloads {
		t.Fatalf("maintenance of a mapped webapp reloaded nginx %d times", n-reloads)
	}

	// A static-files site: no reload either (its gate was rendered
	// ahead), then the page; its health check still answers.
	docs.Maintenance = &Maintenance{}
	if err := f.m.Apply(ctx, []App{shop, docs}); err != nil {
		t.Fatal(err)
	}
	if n := f.m.Reloads(); n != reloads {
		t.Fatalf("static site into maintenance: %d reloads, want none", n-reloads)
	}
	docsHost := map[string]string{"Host": "docs.test"}
	if got, err := get(fresh, base+"/", docsHost); err != nil || maintenanceAnswer(got, "will be back soon") != nil {
		t.Fatalf("static site in maintenance: %+v %v", got, err)
	}
	if got, err := get(fresh, base+"/keter-health", docsHost); err != nil || got.status != 200 {
		t.Fatalf("health check of a static site in maintenance: %+v %v, want 200", got, err)
	}
	if got, err := get(fresh, base+"/", shopHost); err != nil || got.status != 200 {
		t.Fatalf("shop while docs is in maintenance: %+v %v", got, err)
	}
	docs.Maintenance = nil
	if err := f.m.Apply(ctx, []App{shop, docs}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(fresh, base+"/", docsHost); err != nil || got.status != 200 || got.body != "docs index\n" {
		t.Fatalf("static site after off: %+v %v", got, err)
	}
	if n := f.m.Reloads(); n != reloads {
		t.Fatalf("static site out of maintenance: %d reloads, want none", n-reloads)
	}
}

// TestMaintenanceByReload: without a port map a webapp goes into
// maintenance by a reload, with the bundle's own page.
func TestMaintenanceByReload(t *testing.T) {
	f, _ := startMaintenanceFront(t)
	ctx := t.Context()
	base := fmt.Sprintf("http://x:%d", f.port)
	c := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	host := map[string]string{"Host": "plain.test"}
	a := backend(t, "a")
	dir := filepath.Join(f.root, "temp", "plain-1")
	writeFile(t, filepath.Join(dir, bundle.MaintenancePage), "<p>our own page: <!--keter:message--></p>\n")
	shop := App{Name: "plain", Dir: dir, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("plain.test")}}, Ports: one(map[int]int{0: portOf(t, a)})}
	if err := f.m.Apply(ctx, []App{shop}); err != nil {
		t.Fatal(err)
	}
	reloads := f.m.Reloads()
	shop.Maintenance = &Maintenance{Message: "an hour"}
	if err := f.m.Apply(ctx, []App{shop}); err != nil {
		t.Fatal(err)
	}
	if n := f.m.Reloads(); n != reloads+1 {
		t.Fatalf("%d reloads, want 1", n-reloads)
	}
	if got, err := get(c, base+"/", host); err != nil || maintenanceAnswer(got, "<p>our own page: an hour</p>") != nil {
		t.Fatalf("in maintenance: %+v %v", got, err)
	}
	if got, err := get(c, base+"/keter-health", host); err != nil || got.status != 200 {
		t.Fatalf("health check: %+v %v", got, err)
	}
	shop.Maintenance = nil
	if err := f.m.Apply(ctx, []App{shop}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(c, base+"/", host); err != nil || got.status != 200 || !strings.HasPrefix(got.body, "app=a ") {
		t.Fatalf("after off: %+v %v", got, err)
	}
}
