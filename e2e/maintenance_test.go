package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// getAll fetches path through keter's nginx and returns the whole answer.
func (k *keter) getAll(c *http.Client, host, path string) (*http.Response, string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", k.Port, path), nil)
	if err != nil {
		return nil, "", err
	}
	req.Host = host
	resp, err := c.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, string(body), err
}

// maintenancePage checks a 503 with Retry-After whose body has want.
func maintenancePage(resp *http.Response, body, want string) error {
	switch {
	case resp.StatusCode != 503:
		return fmt.Errorf("status %d, want 503 (body %.80q)", resp.StatusCode, body)
	case resp.Header.Get("Retry-After") == "":
		return fmt.Errorf("no Retry-After")
	case !strings.Contains(body, want):
		return fmt.Errorf("body lacks %q:\n%s", want, body)
	}
	return nil
}

// maintenanceLoad is keep-alive clients counting app answers (200 with an
// accepted body), maintenance pages (503 with Retry-After and one of the
// pages) and anything else as failed.
type maintenanceLoad struct {
	app, paged, failed atomic.Int64
	mu                 sync.Mutex
	firstErrs          []string
	cancel             context.CancelFunc
	wg                 sync.WaitGroup
}

func startMaintenanceLoad(k *keter, host string, workers int, bodies, pages []string) *maintenanceLoad {
	ctx, cancel := context.WithCancel(context.Background())
	l := &maintenanceLoad{cancel: cancel}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				resp, body, err := k.getAll(c, host, "/")
				body = strings.TrimSpace(body)
				switch {
				case err == nil && resp.StatusCode == 200 && contains(bodies, body):
					l.app.Add(1)
					continue
				case err == nil && resp.StatusCode == 503 && resp.Header.Get("Retry-After") != "" && containsSub(body, pages):
					l.paged.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.firstErrs) < 5 {
					code := 0
					if resp != nil {
						code = resp.StatusCode
					}
					l.firstErrs = append(l.firstErrs, fmt.Sprintf("code=%d body=%.100q err=%v", code, body, err))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func containsSub(s string, subs []string) bool {
	for _, x := range subs {
		if strings.Contains(s, x) {
			return true
		}
	}
	return false
}

func (l *maintenanceLoad) stop(t *testing.T) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	t.Logf("keep-alive load: %d app answers, %d maintenance pages, %d failed", l.app.Load(), l.paged.Load(), l.failed.Load())
	if l.failed.Load() != 0 || l.app.Load() == 0 || l.paged.Load() == 0 {
		t.Fatalf("keep-alive load: %d failed (first: %v), %d app answers, %d maintenance pages", l.failed.Load(), l.firstErrs, l.app.Load(), l.paged.Load())
	}
}

// maintenanceBundle is a webapp answering msg; ownPage, when set, is its
// config/maintenance.html.
func maintenanceBundle(t *testing.T, path, host, msg, ownPage string) {
	t.Helper()
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(fmt.Sprintf("exec: ../bin/demoapp\nhost: %s\nargs: [--message, %q]\n", host, msg))},
		"bin/demoapp":       {Body: demo, Mode: 0o755},
	}
	if ownPage != "" {
		files["config/maintenance.html"] = testkit.File{Body: []byte(ownPage)}
	}
	testkit.Bundle(t, path, files)
}

// TestMaintenanceMode drives maintenance mode through the CLI against
// keter, its nginx and the port map: on and off under keep-alive load with
// no failed request and no nginx reload, the 503 page with the message,
// the health check still 200, the units running, status and /metrics
// saying so; it survives keter stopped, started and restarted, and a
// redeploy (whose own page it then serves); off serves the new version.
// A static-files app goes into maintenance by one reload.
func TestMaintenanceMode(t *testing.T) {
	statusPort := testkit.FreePort(t)
	k := startKeter(t, fmt.Sprintf("healthcheck-path: /keter-health\nstatus:\n  listen: 127.0.0.1:%d\n", statusPort))
	base := fmt.Sprintf("http://127.0.0.1:%d", statusPort)
	host := "maint-" + testkit.Token() + ".test"
	const name = "maint"
	k.deployDemo(name+".keter", host, "v1")
	reloads := nginxReloads(t, k)
	c := &http.Client{Timeout: 10 * time.Second}
	mustPage := func(when, want string) {
		t.Helper()
		resp, body, err := k.getAll(c, host, "/some/page")
		if err == nil {
			err = maintenancePage(resp, body, want)
		}
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
	}
	mustHealth := func(when string) {
		t.Helper()
		if code, body, err := k.Get(host, "/keter-health"); err != nil || code != 200 {
			t.Fatalf("%s: the health check answered %d %q %v, want 200", when, code, body, err)
		}
	}

	load := startMaintenanceLoad(k, host, 4, []string{"v1", "v2"}, []string{"Back at &lt;5&gt;", "our own page: Back at &lt;5&gt;"})
	time.Sleep(300 * time.Millisecond)
	started := time.Now()
	out, _ := mustCLI(t, 0, "maintenance", "on", name, "--message", "Back at <5>", "-c", k.config())
	t.Logf("keter maintenance on took %s: %s", time.Since(started).Round(time.Millisecond), strings.TrimSpace(out))
	if !strings.Contains(out, "maintenance on") || !strings.Contains(out, host) || !strings.Contains(out, "503") {
		t.Errorf("maintenance on says:\n%s", out)
	}
	mustPage("right after on", "Back at &lt;5&gt;")
	mustHealth("in maintenance")
	if u := activeAppUnits(t); len(u) != 1 {
		t.Fatalf("app units in maintenance: %v, want the app still running", u)
	}
	var f struct{ Port int }
	if data, err := os.ReadFile(filepath.Join(k.Root, "etc", "maintenance.json")); err != nil || json.Unmarshal(data, &f) != nil || f.Port == 0 {
		t.Fatalf("ROOT/etc/maintenance.json: %s %v", data, err)
	}
	if m := k.mapOf(t); len(m) == 0 || len(targets(m)) != 1 || !targets(m)[f.Port] {
		t.Fatalf("port map %v, want the app's fronts at the responder %d", m, f.Port)
	}

	// status, status APP, --json, the page and /metrics say so.
	var st struct {
		Apps []struct {
			Name        string `json:"name"`
			State       string `json:"state"`
			Maintenance *struct {
				Message string `json:"message"`
				OwnPage bool   `json:"own_page"`
			} `json:"maintenance"`
		} `json:"apps"`
	}
	jsonOut, _ := mustCLI(t, 0, "status", "--json", "-c", k.config())
	if err := json.Unmarshal([]byte(jsonOut), &st); err != nil || len(st.Apps) != 1 || st.Apps[0].Maintenance == nil ||
		st.Apps[0].Maintenance.Message != "Back at <5>" || st.Apps[0].State != "live" {
		t.Fatalf("status --json: %v\n%s", err, jsonOut)
	}
	if text, _ := mustCLI(t, 0, "status", "-c", k.config()); !strings.Contains(text, "live (maintenance)") {
		t.Errorf("status lacks the maintenance:\n%s", text)
	}
	if text, _ := mustCLI(t, 0, "status", name, "-c", k.config()); !strings.Contains(text, "maintenance:  on since") || !strings.Contains(text, `"Back at <5>"`) {
		t.Errorf("status %s lacks the maintenance:\n%s", name, text)
	}
	if v := metric(t, base, "keter_apps_in_maintenance"); v != "1" {
		t.Errorf("keter_apps_in_maintenance = %q, want 1", v)
	}
	if m := httpGet(t, base+"/metrics"); !strings.Contains(m, `keter_app_maintenance_since_timestamp_seconds{app="maint"} `) {
		t.Errorf("/metrics lacks the app's maintenance series:\n%s", m)
	}
	if page := httpGet(t, base+"/"); !strings.Contains(page, `class="state maintenance"`) || !strings.Contains(page, "Back at &lt;5&gt;") {
		t.Errorf("the status page does not show the maintenance")
	}

	// keter stopped: nginx and the map keep it; started, it says so.
	run(t, "systemctl", "stop", k.Unit)
	mustPage("with keter stopped", "Back at &lt;5&gt;")
	mustHealth("with keter stopped")
	k.start()
	mustPage("after keter started again", "Back at &lt;5&gt;")
	run(t, "systemctl", "restart", k.Unit)
	mustPage("after systemctl restart", "Back at &lt;5&gt;")
	if v := metric(t, base, "keter_apps_in_maintenance"); v != "1" {
		t.Errorf("after the restart keter_apps_in_maintenance = %q, want 1", v)
	}

	// A redeploy goes live behind the page, and its own page is served.
	src := filepath.Join(k.Root, "v2", name+".keter") // the file names the app
	if err := os.MkdirAll(filepath.Dir(src), 0o755); err != nil {
		t.Fatal(err)
	}
	maintenanceBundle(t, src, host, "v2", "<html><body>our own page: <!--keter:message--></body></html>\n")
	live := strings.Count(k.Log(), `msg="version live" app=maint `)
	depOut, depErr := mustCLI(t, 0, "deploy", "-c", k.config(), src)
	if !strings.Contains(depErr, "is in maintenance") {
		t.Errorf("keter deploy does not say the app is in maintenance:\n%s\n%s", depOut, depErr)
	}
	if strings.Count(k.Log(), `msg="version live" app=maint `) == live {
		t.Fatal("the new version is not live")
	}
	mustPage("after a redeploy", "our own page: Back at &lt;5&gt;")
	if text, _ := mustCLI(t, 0, "status", name, "-c", k.config()); !strings.Contains(text, "config/maintenance.html") {
		t.Errorf("status %s does not name the bundle's page:\n%s", name, text)
	}

	started = time.Now()
	out, _ = mustCLI(t, 0, "maintenance", "off", name, "-c", k.config())
	t.Logf("keter maintenance off took %s: %s", time.Since(started).Round(time.Millisecond), strings.TrimSpace(out))
	for i := range 10 {
		if code, body, err := k.Get(host, "/"); err != nil || code != 200 || body != "v2" {
			t.Fatalf("request %d after off: %d %q %v, want the new version", i, code, body, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	load.stop(t)
	if n := nginxReloads(t, k) - reloads; n != 0 {
		t.Fatalf("%d nginx reloads across maintenance on, a restart, a redeploy and off, want 0", n)
	}
	if v := metric(t, base, "keter_apps_in_maintenance"); v != "0" {
		t.Errorf("after off keter_apps_in_maintenance = %q, want 0", v)
	}
	if _, errOut := mustCLI(t, 1, "maintenance", "on", "nosuchapp", "-c", k.config()); !strings.Contains(errOut, "no app") {
		t.Errorf("maintenance of an unknown app: %s", errOut)
	}

	// A static-files app goes into maintenance without a reload: its
	// gate was rendered ahead.
	static := "static-" + testkit.Token() + ".test"
	ssrc := filepath.Join(k.Root, "static.keter")
	testkit.Bundle(t, ssrc, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n  - type: static-files\n    host: " + static + "\n    root: ../public\n")},
		"public/index.html": {Body: []byte("static index\n")},
	})
	mustCLI(t, 0, "deploy", "-c", k.config(), ssrc)
	reloads = nginxReloads(t, k)
	mustCLI(t, 0, "maintenance", "on", "static", "-c", k.config())
	if n := nginxReloads(t, k) - reloads; n != 0 {
		t.Fatalf("a static-files app into maintenance: %d reloads, want none", n)
	}
	resp, body, err := k.getAll(c, static, "/")
	if err == nil {
		err = maintenancePage(resp, body, "will be back soon")
	}
	if err != nil {
		t.Fatalf("static-files app in maintenance: %v", err)
	}
	if code, _, err := k.Get(static, "/keter-health"); err != nil || code != 200 {
		t.Fatalf("health check of the static app in maintenance: %d %v", code, err)
	}
	mustCLI(t, 0, "maintenance", "off", "static", "-c", k.config())
	if code, body, err := k.Get(static, "/"); err != nil || code != 200 || body != "static index" {
		t.Fatalf("static app after off: %d %q %v", code, body, err)
	}
}

// TestMaintenanceWithInstances: an app of 3 instances goes into
// maintenance and back under keep-alive load with no failed request and
// no nginx reload: every instance's front points at the responder, and
// afterwards at its own instance again, all three serving.
func TestMaintenanceWithInstances(t *testing.T) {
	k := startKeter(t, "")
	tok := testkit.Token()
	app, host := "minst"+tok, "minst-"+tok+".test"
	src := filepath.Join(k.Root, app+".src")
	stanzaBundle(t, src, host, "    instances: 3\n", "--message", "up")
	k.Drop(src, app+".keter")
	k.WaitBody(host, "up", 60*time.Second)
	eventually(t, 30*time.Second, func() error {
		if !strings.Contains(k.Log(), `msg="version live" app=`+app+" ") {
			return fmt.Errorf("not live yet")
		}
		return nil
	})
	before := k.mapOf(t)
	if len(targets(before)) != 3 || len(before) < 3 {
		t.Fatalf("port map %v, want fronts to 3 instances", before)
	}
	reloads := nginxReloads(t, k)

	load := startMaintenanceLoad(k, host, 4, []string{"up"}, []string{"Down for maintenance"})
	time.Sleep(300 * time.Millisecond)
	mustCLI(t, 0, "maintenance", "on", app, "-c", k.config())
	var f struct{ Port int }
	if data, err := os.ReadFile(filepath.Join(k.Root, "etc", "maintenance.json")); err != nil || json.Unmarshal(data, &f) != nil || f.Port == 0 {
		t.Fatalf("ROOT/etc/maintenance.json: %s %v", data, err)
	}
	for front, to := range k.mapOf(t) {
		if to != f.Port {
			t.Errorf("in maintenance front %d goes to %d, want the responder %d", front, to, f.Port)
		}
	}
	c := &http.Client{Timeout: 10 * time.Second}
	for i := range 12 {
		resp, body, err := k.getAll(c, host, "/")
		if err == nil {
			err = maintenancePage(resp, body, "Down for maintenance")
		}
		if err != nil {
			t.Fatalf("request %d in maintenance: %v", i, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	mustCLI(t, 0, "maintenance", "off", app, "-c", k.config())
	if after := k.mapOf(t); !maps.Equal(after, before) {
		t.Errorf("after off the map is %v, want %v again", after, before)
	}
	// All three serve again (one that lost a kept connection to keter's
	// closing is left alone for a second).
	pids := map[string]bool{}
	for end := time.Now().Add(5 * time.Second); len(pids) < 3 && time.Now().Before(end); {
		if code, body, err := k.Get(host, "/pid"); err == nil && code == 200 {
			pids[body] = true
		}
	}
	if len(pids) != 3 {
		t.Errorf("after off, requests reached %d instances, want 3: %v", len(pids), pids)
	}
	time.Sleep(300 * time.Millisecond)
	if load.failed.Load() > 0 {
		for _, l := range strings.Split(run(t, "journalctl", "--no-pager", "-o", "short-precise", "-u", k.Nginx), "\n") {
			if strings.Contains(l, "[") && !strings.Contains(l, "no live upstreams") {
				t.Log(l)
			}
		}
		t.Log(k.Log())
	}
	load.stop(t)
	if n := nginxReloads(t, k) - reloads; n != 0 {
		t.Errorf("maintenance on and off reloaded nginx %d times, want 0", n)
	}
}
