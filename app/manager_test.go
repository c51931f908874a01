package app

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

type harness struct {
	t     *testing.T
	cfg   *config.Config
	units *fakeUnits
	proxy *fakeProxy
	m     *Manager
	stop  func()
	// maintPort is the maintenance responder's port start gives New.
	maintPort int
	// serving, when set, is the Options' connection counter.
	serving func([]int) (int, error)
	// unitsAs, when set, is what New gets instead of units (a fake with
	// more methods).
	unitsAs Units
	// startsAtOnce, when set, replaces the bound on versions starting
	// their units at once.
	startsAtOnce int
}

func newHarness(t *testing.T, units *fakeUnits) *harness {
	t.Helper()
	root := t.TempDir()
	// A range of its own: keter's default ranges are also used by the
	// e2e tests and by keters running on this host.
	from := 20000 + rand.IntN(100)*100
	cfg, _, err := config.Parse([]byte(fmt.Sprintf("root: %s\ngraceful-drain-micros: 1000\nport-manager: {reserve: false, ranges: [{from: %d, to: %d}]}\n", root, from, from+99)), root)
	if err != nil {
		t.Fatal(err)
	}
	if units == nil {
		units = newFakeUnits()
	}
	h := &harness{t: t, cfg: cfg, units: units, proxy: &fakeProxy{}}
	h.start()
	return h
}

func (h *harness) start() {
	ready := make(chan struct{})
	var units Units = h.units
	if h.unitsAs != nil {
		units = h.unitsAs
	}
	m, err := New(Options{Config: h.cfg, Units: units, Proxy: h.proxy, OnReady: func() { close(ready) }, StableWait: time.Millisecond, MaintenancePort: h.maintPort, Serving: h.serving,
		StopHook: func(front, port int, unit string) []string {
			return []string{"/hook", strconv.Itoa(front), strconv.Itoa(port), unit}
		}})
	if err != nil {
		h.t.Fatal(err)
	}
	if h.startsAtOnce > 0 {
		m.starting = make(chan struct{}, h.startsAtOnce)
	}
	h.m = m
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
		}
	}
	h.t.Cleanup(stop)
	h.stop = stop
	select {
	case <-ready:
	case err := <-done:
		h.t.Fatalf("manager stopped: %v", err)
	}
}

func (h *harness) drop(name, host string) {
	h.t.Helper()
	src := filepath.Join(h.t.TempDir(), name)
	testkit.DemoBundle(h.t, src, host, "--message", testkit.Token())
	if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), name)); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) waitStatus(app string, f func(AppStatus) bool) AppStatus {
	h.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		for _, s := range h.m.Status() {
			if s.Name == app && f(s) {
				return s
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	h.t.Fatalf("app %s never reached the expected status: %+v", app, h.m.Status())
	return AppStatus{}
}

func TestDeployReplaceRemove(t *testing.T) {
	h := newHarness(t, nil)
	h.drop("web.keter", "web.test")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
	if got := h.proxy.serving()["web"]; got != s1.Live.Version {
		t.Fatalf("proxy serves %q, want %q", got, s1.Live.Version)
	}

	h.drop("web.keter", "web.test")
	s2 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil && s.Live.Version != s1.Live.Version })
	// The state (and so the status) says live before the proxy switches.
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s2.Live.Version })
	waitFor(t, func() bool {
		_, err := os.Stat(s1.Live.Dir)
		return len(h.units.names()) == 1 && h.units.names()[0] == s2.Live.Units[0] && errors.Is(err, os.ErrNotExist)
	})

	os.Remove(filepath.Join(h.cfg.Incoming(), "web.keter"))
	waitFor(t, func() bool {
		dirs, _ := os.ReadDir(h.cfg.Temp())
		envs, _ := os.ReadDir(filepath.Join(h.cfg.Etc(), "env"))
		return len(h.units.names()) == 0 && len(h.proxy.serving()) == 0 && len(dirs) == 0 && len(envs) == 0
	})
}

func TestFailedVersionLeavesOldServing(t *testing.T) {
	for _, mode := range []string{"start", "never-ready", "stranger", "foreign"} {
		t.Run(mode, func(t *testing.T) {
			units := newFakeUnits()
			h := newHarness(t, units)
			h.drop("web.keter", "web.test")
			s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })

			const said = "app says: cannot open /srv/private/db.conf"
			units.mu.Lock()
			units.failing["web"] = mode
			units.journal["web"] = []string{said}
			units.mu.Unlock()
			src := filepath.Join(t.TempDir(), "web.keter")
			// A short bound keeps the never-ready case quick.
			testkit.Bundle(t, src, map[string]testkit.File{
				"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    exec: ../app\n    host: web.test\n    ensure-alive-time-bound: 300000\n")},
				"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
			})
			os.Rename(src, filepath.Join(h.cfg.Incoming(), "web.keter"))
			s2 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "failed" })
			if s2.Live == nil || s2.Live.Version != s1.Live.Version || h.proxy.serving()["web"] != s1.Live.Version {
				t.Fatalf("old version no longer live: %+v", s2.Live)
			}
			if mode == "never-ready" && (len(s2.LastLog) == 0 || !strings.Contains(s2.LastError, "ensure-alive-time-bound")) {
				t.Fatalf("error lacks reason or log: %q %v", s2.LastError, s2.LastLog)
			}
			// The app's lines are log lines (shown only to who may read
			// its log), never part of the error everyone sees.
			if strings.Contains(s2.LastError, said) {
				t.Fatalf("the error quotes the app's log: %q", s2.LastError)
			}
			if mode == "start" && !slices.Contains(s2.LastLog, said) {
				t.Fatalf("a failed start's log lines are not the status's: %q %v", s2.LastError, s2.LastLog)
			}
			if mode == "stranger" && !strings.Contains(s2.LastError, "port answered but unit") {
				t.Fatalf("a stranger on the port was taken for the app: %q", s2.LastError)
			}
			if mode == "foreign" && !strings.Contains(s2.LastError, "outside the unit") {
				t.Fatalf("another program on the app's port was taken for the app: %q", s2.LastError)
			}
			waitFor(t, func() bool { return len(units.names()) == 1 })
			if dirs, _ := os.ReadDir(h.cfg.Temp()); len(dirs) != 1 {
				t.Fatalf("temp holds %d folders, want the live one only", len(dirs))
			}
		})
	}
}

func TestHostOwnedByAnotherAppIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.drop("first.keter", "shared.test")
	h.waitStatus("first", func(s AppStatus) bool { return s.LastResult == "live" })
	h.drop("second.keter", "shared.test")
	s := h.waitStatus("second", func(s AppStatus) bool { return s.LastResult == "failed" })
	if !errors.Is(errors.New(s.LastError), ErrHostTaken) && !(strings.Contains(s.LastError, `"first"`) && strings.Contains(s.LastError, `"second"`)) {
		t.Fatalf("error does not name both apps: %s", s.LastError)
	}
	if got := h.proxy.serving(); len(got) != 1 || got["first"] == "" {
		t.Fatalf("proxy serves %v, want only first", got)
	}
}

// TestSyncCoalesces: many callers while an Apply runs share the next one.
func TestSyncCoalesces(t *testing.T) {
	p := &fakeProxy{gate: make(chan struct{})}
	s := newSyncer(p, func() []Live { return nil })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() { defer wg.Done(); s.Sync(ctx) }()
	}
	time.Sleep(50 * time.Millisecond) // let them all queue behind the gate
	close(p.gate)
	wg.Wait()
	if p.applies < 1 || p.applies > 2 {
		t.Fatalf("%d applies for 100 concurrent syncs, want 1 or 2", p.applies)
	}
}

// TestRestartReadopts: a new manager over the same root and units adopts
// the live version without starting anything, and clears orphans.
func TestRestartReadopts(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.drop("web.keter", "web.test")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	h.stop()

	orphanDir := filepath.Join(h.cfg.Temp(), "web-orphan")
	os.Mkdir(orphanDir, 0o755)
	units.running["keter-app-web-orphan-web0.service"] = &fakeUnit{st: unitgen.Status{Name: "keter-app-web-orphan-web0.service", ActiveState: "active"}}
	startedBefore := len(units.started)

	h.proxy = &fakeProxy{}
	h.start()
	s2 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	if s2.Live.Version != s1.Live.Version || h.proxy.serving()["web"] != s1.Live.Version {
		t.Fatalf("re-adopted version %s, want %s", s2.Live.Version, s1.Live.Version)
	}
	time.Sleep(50 * time.Millisecond) // the start-up scan must find the bundle unchanged
	if len(units.started) != startedBefore {
		t.Fatalf("restart started units: %v", units.started[startedBefore:])
	}
	if !slices.Contains(units.stopped, "keter-app-web-orphan-web0.service") {
		t.Fatal("orphaned unit not stopped")
	}
	if _, err := os.Stat(orphanDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatal("orphaned folder not deleted")
	}
}

func waitFor(t *testing.T, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestFrontPortsStayAndGoBack: a replacement keeps the app's front port
// (so the proxy config stays as it is) on a new version port; removing the
// app gives both back to the pool once the old version is stopped.
func TestFrontPortsStayAndGoBack(t *testing.T) {
	h := newHarness(t, nil)
	live := func() Live { return h.proxy.app("web") }
	h.drop("web.keter", "web.test")
	h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	waitFor(t, func() bool { return live().Version != "" })
	first := live()
	if len(first.Fronts) != 1 || first.Fronts[0][0] == 0 || first.Fronts[0][0] == first.Ports[0][0] {
		t.Fatalf("first version: fronts %v, ports %v: want one front port apart from the version's", first.Fronts, first.Ports)
	}

	h.drop("web.keter", "web.test")
	waitFor(t, func() bool { v := live().Version; return v != "" && v != first.Version })
	second := live()
	if second.Fronts[0][0] != first.Fronts[0][0] {
		t.Fatalf("front port moved from %d to %d on a replacement", first.Fronts[0][0], second.Fronts[0][0])
	}
	if second.Ports[0][0] == first.Ports[0][0] {
		t.Fatalf("the new version got the old version's port %d", first.Ports[0][0])
	}

	os.Remove(filepath.Join(h.cfg.Incoming(), "web.keter"))
	// stopVersion frees ports after the units are down.
	waitFor(t, func() bool {
		h.m.ports.mu.Lock()
		defer h.m.ports.mu.Unlock()
		return len(h.units.names()) == 0 && len(h.m.ports.held) == 0
	})
}

// TestReadoptsStateWithoutFronts: a state file from before front ports
// (an upgraded keter) re-adopts the running version as it is, gives it a
// front port and records it.
func TestReadoptsStateWithoutFronts(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.drop("web.keter", "web.test")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	h.stop()

	st, err := loadState(h.m.statePath())
	if err != nil {
		t.Fatal(err)
	}
	rec := st.Apps["web"]
	rec.Fronts = nil
	st.Apps["web"] = rec
	if err := saveState(h.m.statePath(), st); err != nil {
		t.Fatal(err)
	}
	startedBefore := len(units.started)

	h.proxy = &fakeProxy{}
	h.start()
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s1.Live.Version })
	l := h.proxy.app("web")
	if len(l.Fronts) != 1 || l.Fronts[0][0] == 0 || l.Fronts[0][0] == l.Ports[0][0] {
		t.Fatalf("re-adopted version: fronts %v, ports %v: want a front port of its own", l.Fronts, l.Ports)
	}
	if len(units.started) != startedBefore {
		t.Fatalf("re-adoption started units: %v", units.started[startedBefore:])
	}
	st, err = loadState(h.m.statePath())
	if err != nil || st.Apps["web"].Fronts[0][0] != l.Fronts[0][0] {
		t.Fatalf("state after re-adoption: %+v %v, want front %d recorded", st.Apps["web"], err, l.Fronts[0][0])
	}
}
