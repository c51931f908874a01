package app

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

// dropRelease drops a bundle for web.test with a background stanza, a
// webapp and a release step; tag makes each bundle new.
func (h *harness) dropRelease(name, tag string) {
	h.t.Helper()
	src := filepath.Join(h.t.TempDir(), name)
	testkit.Bundle(h.t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("release: {exec: ../migrate, args: [up], timeout: 1m}\nstanzas:\n" +
			"  - {type: background, exec: ../worker}\n" +
			"  - {type: webapp, exec: ../app, host: web.test, port-env-vars: [HTTP_PORT], env: {DB: db1}, args: [" + tag + "]}\n")},
		"app":     {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
		"worker":  {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
		"migrate": {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), name)); err != nil {
		h.t.Fatal(err)
	}
}

// TestReleaseRunsFirst: the step runs once per new bundle, before any
// unit of its version, as the first webapp stanza without PORT; its
// secrets file is gone once it ended.
func TestReleaseRunsFirst(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })

	units.mu.Lock()
	started, runs := slices.Clone(units.started), slices.Clone(units.runs)
	units.mu.Unlock()
	want := []string{"release", "bg0", "web1"}
	if len(started) != 3 {
		t.Fatalf("started %v, want %v", started, want)
	}
	for i, w := range want {
		if m, _ := unitgen.ParseUnitName(started[i]); m.Stanza != w || m.Version != s.Live.Version {
			t.Fatalf("started %v, want the stanzas %v of version %s in that order", started, want, s.Live.Version)
		}
	}
	if len(runs) != 1 {
		t.Fatalf("ran %d release steps, want 1", len(runs))
	}
	u := runs[0]
	for _, k := range []string{"PORT", "HTTP_PORT"} {
		if v := envOf(u, k); v != "" {
			t.Errorf("release step gets %s=%s", k, v)
		}
	}
	if envOf(u, "APPROOT") != "http://web.test" {
		t.Errorf("APPROOT = %q", envOf(u, "APPROOT"))
	}
	secrets, err := os.ReadFile(u.EnvFile)
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the step's env file %s is left: %q, %v", u.EnvFile, secrets, err)
	}
	if !strings.Contains(string(u.Secrets), `DB="db1"`) {
		t.Errorf("release step lacks the webapp's env: %q", u.Secrets)
	}

	// A new bundle runs its step again.
	h.dropRelease("web.keter", "b")
	h.waitStatus("web", func(n AppStatus) bool { return n.Live != nil && n.Live.Version != s.Live.Version })
	units.mu.Lock()
	n := len(units.runs)
	units.mu.Unlock()
	if n != 2 {
		t.Fatalf("ran %d release steps for 2 bundles", n)
	}
}

// TestReleaseFailureKeepsOld: a failing step fails the deploy with its
// last lines; nothing of the new version started, the old one serves on.
func TestReleaseFailureKeepsOld(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })

	units.mu.Lock()
	units.failing["web"] = "release-fail"
	units.journal["web"] = []string{"migration 0042: relation \"users\" already exists",
		"keter-app-web-x-release.service: Main process exited, code=exited, status=3/NOTIMPLEMENTED",
		"keter-app-web-x-release.service: Failed with result 'exit-code'."}
	before := len(units.started)
	units.mu.Unlock()
	h.dropRelease("web.keter", "b")
	s2 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "failed" })
	if !strings.Contains(s2.LastError, "release step failed: migrate exited with status 3 after") {
		t.Errorf("last error %q", s2.LastError)
	}
	if !slices.Contains(s2.LastLog, `migration 0042: relation "users" already exists`) {
		t.Errorf("last log %q lacks the step's line", s2.LastLog)
	}
	if s2.Live == nil || s2.Live.Version != s1.Live.Version || h.proxy.serving()["web"] != s1.Live.Version {
		t.Fatalf("live %+v after a failed release step, want %s", s2.Live, s1.Live.Version)
	}
	units.mu.Lock()
	after := slices.Clone(units.started[before:])
	units.mu.Unlock()
	if len(after) != 1 || !strings.HasSuffix(after[0], "-release.service") {
		t.Fatalf("started %v after the failed step, want only the step", after)
	}
	dirs, _ := os.ReadDir(h.cfg.Temp())
	if len(dirs) != 1 {
		t.Errorf("temp holds %d folders, want the live version's only", len(dirs))
	}
}

// TestReleaseSuperseded: a newer bundle stops a running step, and goes
// live itself.
func TestReleaseSuperseded(t *testing.T) {
	units := newFakeUnits()
	units.failing["web"] = "release-hang"
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	waitFor(t, func() bool {
		units.mu.Lock()
		defer units.mu.Unlock()
		return len(units.runs) == 1
	})
	hung := units.runs[0].Name
	units.mu.Lock()
	units.failing["web"] = ""
	units.mu.Unlock()
	h.dropRelease("web.keter", "b")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	if m, _ := unitgen.ParseUnitName(hung); m.Version == s.Live.Version {
		t.Fatalf("the hung step's version %s went live", m.Version)
	}
	units.mu.Lock()
	defer units.mu.Unlock()
	if !slices.Contains(units.stopped, hung) {
		t.Fatalf("the superseded step %s was not stopped (stopped: %v)", hung, units.stopped)
	}
}

// TestReleaseNotForSameBundle: a replacement by the same bundle (a
// restart, an environment change) does not run the step again.
func TestReleaseNotForSameBundle(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	cur := h.m.liveVersion("web")
	r := &rollout{m: h.m, cur: cur, v: &version{app: "web", id: "again", digest: s.Live.Digest, dir: cur.dir, cfg: cur.cfg}}
	if err := r.release(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	r.v.digest = "another"
	if err := r.release(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	units.mu.Lock()
	defer units.mu.Unlock()
	if len(units.runs) != 2 {
		t.Fatalf("%d runs, want one for the first deploy and one for the other digest", len(units.runs))
	}
}

// TestReleaseInterrupted: keter stopping mid-step stops the step.
func TestReleaseInterrupted(t *testing.T) {
	units := newFakeUnits()
	units.failing["web"] = "release-hang"
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	waitFor(t, func() bool {
		units.mu.Lock()
		defer units.mu.Unlock()
		return len(units.runs) == 1
	})
	h.stop()
	units.mu.Lock()
	defer units.mu.Unlock()
	if name := units.runs[0].Name; !slices.Contains(units.stopped, name) {
		t.Fatalf("step %s not stopped at shutdown", name)
	}
}

// TestReconcileStopsReleaseUnit: a step left running by a keter that
// died belongs to a version that never went live: the next start stops it.
func TestReconcileStopsReleaseUnit(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	h.dropRelease("web.keter", "a")
	h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	h.stop()
	name := "keter-app-web-gone-release.service"
	m, ok := unitgen.ParseUnitName(name)
	if !ok {
		t.Fatal("release unit name does not read back")
	}
	units.running[name] = &fakeUnit{st: unitgen.Status{Name: name, Meta: m, ActiveState: "activating", SubState: "start"}}
	h.proxy = &fakeProxy{}
	h.start()
	h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	waitFor(t, func() bool {
		units.mu.Lock()
		defer units.mu.Unlock()
		return slices.Contains(units.stopped, name)
	})
}

func TestEnded(t *testing.T) {
	for _, tc := range []struct {
		st   unitgen.Status
		want string
	}{
		{unitgen.Status{Result: "exit-code", ExecMainCode: unitgen.CodeExited, ExecMainStatus: 3}, "exited with status 3"},
		{unitgen.Status{Result: "timeout", ExecMainCode: unitgen.CodeKilled, ExecMainStatus: 15}, "did not finish within its timeout of 2s (release: timeout) and was stopped"},
		{unitgen.Status{Result: "signal", ExecMainCode: unitgen.CodeKilled, ExecMainStatus: 9}, "was killed by signal 9"},
		{unitgen.Status{Result: "unknown"}, "failed (unknown)"},
	} {
		if got := ended(tc.st, 2*time.Second); got != tc.want {
			t.Errorf("ended(%+v) = %q, want %q", tc.st, got, tc.want)
		}
	}
}
