package usage_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/dbus"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
	"github.com/keter-systemd/keter/usage"
)

// startApp runs the demo app as version of app, the way the core does.
func startApp(t *testing.T, c *dbus.Client, root, app, version string) (unitgen.Unit, int) {
	t.Helper()
	dir := filepath.Join(root, version)
	bin, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "demoapp"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	g := &config.Config{Root: root, ExternalHTTPPort: 80, ExternalHTTPSPort: 443}
	if err := os.MkdirAll(g.Hooks(), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.Hooks(), unitgen.OwnFolderFile), []byte(unitgen.OwnFolderScript), 0o644); err != nil {
		t.Fatal(err)
	}
	port := testkit.FreePort(t)
	u, err := unitgen.Build(unitgen.Input{App: app, Version: version, Dir: dir, Port: port, EnvDir: root, Global: g,
		Stanza: bundle.Stanza{Type: bundle.TypeWebApp, WebApp: &bundle.WebApp{Exec: bundle.Exec{Path: "bin/demoapp"}, Hosts: []string{app + ".test"}}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.Stop(context.Background(), u.Name)
		c.ResetFailed(context.Background(), u.Name)
	})
	if err := c.Start(t.Context(), u); err != nil {
		t.Fatal(err)
	}
	get(t, port, "/")
	return u, port
}

// get fetches a path from the app, retrying while it starts.
func get(t *testing.T, port int, path string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d%s", port, path))
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if rerr == nil && resp.StatusCode == 200 {
				return string(b)
			}
			err = fmt.Errorf("status %d %v", resp.StatusCode, rerr)
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s on port %d: %v", path, port, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// watch refreshes the tracker and fails the test if any total of key
// went down since the last call.
type watch struct {
	t    *testing.T
	tr   *usage.Tracker
	c    *dbus.Client
	key  usage.Key
	last usage.Stanza
}

func (w *watch) read() usage.Stanza {
	w.t.Helper()
	list, err := w.c.List(w.t.Context(), unitgen.AppPrefix(w.key.App))
	if err != nil {
		w.t.Fatal(err)
	}
	s := w.tr.Observe(w.t.Context(), list, time.Now())[w.key]
	for f := range unitgen.NumFigures {
		was, _ := w.last.Get(f)
		now, _ := s.Get(f)
		if f.Counter() && now < was {
			w.t.Fatalf("%s total went down: %d → %d", f, was, now)
		}
	}
	w.last = s
	return s
}

func fig(s usage.Stanza, f unitgen.Figure) uint64 {
	v, _ := s.Get(f)
	return v
}

// TestTotalsAcrossCrashAndReplacement runs a real app through a crash
// (systemd restarts it with fresh counters) and a replacement, and checks
// that keter's totals hold what the app spent and never go down.
func TestTotalsAcrossCrashAndReplacement(t *testing.T) {
	testkit.NeedSystemd(t)
	c, err := dbus.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	root := testkit.Root(t)
	app := "u" + testkit.Token()
	key := usage.Key{App: app, Stanza: "web0"}
	// Only this test's units: other tests' units are none of its business.
	tr := usage.New(c, unitgen.AppPrefix(app), nil)
	w := &watch{t: t, tr: tr, c: c, key: key}
	w.read() // keter's totals begin

	u1, port := startApp(t, c, root, app, "v1")
	get(t, port, "/burn?ms=800")
	s := w.read()
	if fig(s, unitgen.CPU) < uint64(800*time.Millisecond) {
		t.Fatalf("CPU total %d ns after the app burned 800 ms", fig(s, unitgen.CPU))
	}
	if m, ok := s.Get(unitgen.Memory); !ok || m == 0 {
		t.Fatalf("no memory counted: %+v", s)
	}
	seenCPU, seenIP := fig(s, unitgen.CPU), fig(s, unitgen.IPOut)

	// Spend more, unseen by the tracker, then crash.
	get(t, port, "/burn?ms=500")
	for range 100 {
		get(t, port, "/")
	}
	before, err := c.List(t.Context(), u1.Name)
	if err != nil || len(before) != 1 {
		t.Fatalf("listing %s: %v %v", u1.Name, before, err)
	}
	if out, err := exec.Command("systemctl", "kill", "-s", "KILL", u1.Name).CombinedOutput(); err != nil {
		t.Fatalf("systemctl kill: %v: %s", err, out)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		s = w.read()
		l, _ := c.List(t.Context(), u1.Name)
		if len(l) == 1 && l[0].ActiveState == "active" && l[0].Usage.Started != before[0].Usage.Started {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s was not restarted: %+v", u1.Name, l)
		}
		time.Sleep(100 * time.Millisecond)
	}
	get(t, port, "/")
	// The killed run's final record comes through the journal.
	var finalIP uint64
	for deadline := time.Now().Add(30 * time.Second); ; {
		s = w.read()
		fs, _, err := c.Finals(t.Context(), u1.Name, "", time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fs {
			if f.Figures[unitgen.IPOut] != unitgen.Unset {
				finalIP = max(finalIP, f.Figures[unitgen.IPOut])
			}
		}
		if seenIP == 0 || (finalIP > 0 && fig(s, unitgen.IPOut) >= finalIP) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	switch {
	case seenIP == 0:
		t.Log("systemd counts no IP traffic here: the journal path is checked by CPU only where systemd counts it")
	case finalIP <= seenIP:
		t.Errorf("the killed run's record says %d bytes sent, no more than the %d read before the unseen requests", finalIP, seenIP)
	case fig(s, unitgen.IPOut) < finalIP:
		t.Errorf("IP sent total %d after the crash, below the killed run's final %d", fig(s, unitgen.IPOut), finalIP)
	}
	if got := fig(s, unitgen.CPU); got < seenCPU {
		t.Errorf("CPU total %d after the crash, below the %d read before", got, seenCPU)
	}
	t.Logf("after the crash: CPU %d ns (read before the unseen 500 ms: %d), IP sent %d (final record %d)", fig(s, unitgen.CPU), seenCPU, fig(s, unitgen.IPOut), finalIP)

	// Replace: a new version starts, the old one stops and vanishes.
	get(t, port, "/burn?ms=300")
	_, port2 := startApp(t, c, root, app, "v2")
	get(t, port2, "/burn?ms=300")
	both := w.read()
	if err := c.Stop(t.Context(), u1.Name); err != nil {
		t.Fatal(err)
	}
	after := w.read()
	if fig(after, unitgen.CPU) < fig(both, unitgen.CPU) {
		t.Errorf("stopping the old version lowered the CPU total: %d → %d", fig(both, unitgen.CPU), fig(after, unitgen.CPU))
	}
	if fig(after, unitgen.CPU) < seenCPU+uint64(600*time.Millisecond) {
		t.Errorf("CPU total %d, want at least %d: 800 ms, then 300 ms in each version", fig(after, unitgen.CPU), seenCPU+uint64(600*time.Millisecond))
	}
	if !after.Since.Before(time.Now()) || after.Since.IsZero() {
		t.Errorf("since %s", after.Since)
	}
}
