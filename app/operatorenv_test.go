package app

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/unitgen"
)

func TestOperatorEnvStore(t *testing.T) {
	h := newHarness(t, nil)
	m := h.m
	if err := m.SetEnv("shop", []EnvVar{{Name: "A", Value: "1"}, {Name: "TOKEN", Value: "s3=cr=t", Secret: true}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetEnv("shop", []EnvVar{{Name: "A", Value: "2\nlines"}}); err != nil {
		t.Fatal(err)
	}
	vals, err := m.OperatorEnv("shop")
	if err != nil || vals["A"] != "2\nlines" || vals["TOKEN"] != "s3=cr=t" || len(vals) != 2 {
		t.Fatalf("OperatorEnv = %q, %v", vals, err)
	}
	list, err := m.Env("shop")
	if err != nil || len(list) != 2 || list[0] != (EnvVar{Name: "A", Value: "2\nlines"}) || list[1] != (EnvVar{Name: "TOKEN", Secret: true}) {
		t.Fatalf("Env = %+v, %v (a secret's value is never read back)", list, err)
	}
	path := filepath.Join(h.cfg.Etc(), "operator-env", "shop.json")
	for p, want := range map[string]os.FileMode{path: 0o600, filepath.Dir(path): 0o700 | os.ModeDir} {
		if fi, err := os.Stat(p); err != nil || fi.Mode() != want {
			t.Errorf("%s: %v %v, want mode %v", p, fi.Mode(), err, want)
		}
	}

	t.Run("every bad variable at once, nothing stored", func(t *testing.T) {
		err := m.SetEnv("shop", []EnvVar{{Name: "PORT", Value: "80"}, {Name: "APPROOT", Value: "x"}, {Name: "9X", Value: "v"}, {Name: "B", Value: "nul\x00"}, {Name: "OK", Value: "fine"}})
		if !errors.Is(err, ErrInvalidEnv) || !errors.Is(err, unitgen.ErrReservedVar) {
			t.Fatalf("SetEnv = %v, want ErrInvalidEnv and ErrReservedVar", err)
		}
		for _, want := range []string{"PORT", "APPROOT", "9X", "NUL"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not name %s", err, want)
			}
		}
		if vals, _ := m.OperatorEnv("shop"); len(vals) != 2 {
			t.Errorf("after a refused set: %q", vals)
		}
	})
	t.Run("unset of a name not set removes nothing", func(t *testing.T) {
		if err := m.UnsetEnv("shop", []string{"A", "NOPE"}); !errors.Is(err, ErrNoSuchVar) || !strings.Contains(err.Error(), "NOPE") {
			t.Fatalf("UnsetEnv = %v", err)
		}
		if vals, _ := m.OperatorEnv("shop"); len(vals) != 2 {
			t.Errorf("after a refused unset: %q", vals)
		}
	})
	t.Run("a bad app name names no file", func(t *testing.T) {
		if err := m.SetEnv("../state", []EnvVar{{Name: "A", Value: "1"}}); err == nil {
			t.Fatal("SetEnv(../state) stored")
		}
	})
	t.Run("kept across keter restarts; the last unset removes the file", func(t *testing.T) {
		h.stop()
		h.start()
		if vals, _ := h.m.OperatorEnv("shop"); vals["TOKEN"] != "s3=cr=t" {
			t.Fatalf("after a restart: %q", vals)
		}
		if err := h.m.UnsetEnv("shop", []string{"A", "TOKEN"}); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("file left: %v", err)
		}
	})
}

// A careless operator: a secret set again without --secret stays secret;
// a layer too large to start a process with is refused, nothing stored;
// a looser folder left from before is made root's only again.
func TestOperatorEnvHardening(t *testing.T) {
	h := newHarness(t, nil)
	m := h.m
	if err := m.SetEnv("shop", []EnvVar{{Name: "TOKEN", Value: "old", Secret: true}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetEnv("shop", []EnvVar{{Name: "TOKEN", Value: "new"}}); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.Env("shop"); len(list) != 1 || list[0] != (EnvVar{Name: "TOKEN", Secret: true}) {
		t.Errorf("after a set without --secret: %+v, want TOKEN still secret", list)
	}
	if vals, _ := m.OperatorEnv("shop"); vals["TOKEN"] != "new" {
		t.Errorf("value %q, want new", vals["TOKEN"])
	}
	big := strings.Repeat("x", unitgen.MaxOperatorValue)
	var many []EnvVar
	for i := range MaxOperatorTotal/unitgen.MaxOperatorValue + 1 {
		many = append(many, EnvVar{Name: "BIG_" + strconv.Itoa(i), Value: big})
	}
	if err := m.SetEnv("shop", many); !errors.Is(err, ErrInvalidEnv) || !strings.Contains(err.Error(), "more than") {
		t.Fatalf("SetEnv of %d × 32 KiB = %v, want refused as too large", len(many), err)
	}
	if vals, _ := m.OperatorEnv("shop"); len(vals) != 1 {
		t.Errorf("after a refused set: %d variables", len(vals))
	}
	if err := m.SetEnv("shop", many[:len(many)-2]); err != nil {
		t.Errorf("SetEnv of %d × 32 KiB (under the bound): %v", len(many)-2, err)
	}
	dir := filepath.Join(h.cfg.Etc(), "operator-env")
	os.Chmod(dir, 0o755)
	if err := m.UnsetEnv("shop", []string{"BIG_0"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("%s: %v %v, want 0700", dir, fi.Mode(), err)
	}
}

// The port-env-vars names of the live bundle are refused at set time.
func TestOperatorEnvRefusesLivePortVars(t *testing.T) {
	h := newHarness(t, nil)
	src := filepath.Join(t.TempDir(), "y.keter")
	testkit.Bundle(t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    exec: ../app\n    host: y.test\n    port-env-vars: [YESOD_PORT]\n")},
		"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), "y.keter")); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("y", func(s AppStatus) bool { return s.Live != nil })
	err := h.m.SetEnv("y", []EnvVar{{Name: "YESOD_PORT", Value: "1"}})
	if !errors.Is(err, unitgen.ErrReservedVar) || !strings.Contains(err.Error(), "port-env-vars") {
		t.Fatalf("SetEnv(YESOD_PORT) = %v", err)
	}
}

// liveEnvFile reads what the live version's webapp unit gets from its
// root-only env file ("" without one).
func (h *harness) liveEnvFile(app string) string {
	h.t.Helper()
	v := h.m.liveVersion(app)
	if v == nil {
		h.t.Fatalf("%s: no live version", app)
	}
	if len(v.envFiles) == 0 {
		return ""
	}
	data, err := os.ReadFile(v.envFiles[len(v.envFiles)-1])
	if err != nil {
		h.t.Fatal(err)
	}
	return string(data)
}

// Restart replaces the live version with its own bundle: a new version
// with the same digest and the operator env as it is now; a newer bundle
// waiting in incoming that failed is not what it restarts.
func TestRestartReplacesLiveVersion(t *testing.T) {
	h := newHarness(t, nil)
	if err := h.m.Restart(t.Context(), "web"); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("Restart of an unknown app = %v", err)
	}
	d1, s1, err := h.place("web", false)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.m.SetEnv("web", []EnvVar{{Name: "TOKEN", Value: "t-1", Secret: true}}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(h.liveEnvFile("web"), "TOKEN") {
		t.Fatal("a stored variable reached the running version without a restart")
	}
	kept, _ := h.m.KeptBundles("web")

	if err := h.m.Restart(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	s2, _ := h.m.appStatus("web")
	if s2.Live == nil || s2.Live.Version == s1.Live.Version || s2.Live.Digest != d1 {
		t.Fatalf("after restart: %+v, want a new version of bundle %.12s (was %s)", s2.Live, d1, s1.Live.Version)
	}
	if got := h.liveEnvFile("web"); !strings.Contains(got, `TOKEN="t-1"`) {
		t.Errorf("env file after restart:\n%s", got)
	}
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s2.Live.Version })
	waitFor(t, func() bool { _, err := os.Stat(s1.Live.Dir); return errors.Is(err, os.ErrNotExist) })
	if k2, _ := h.m.KeptBundles("web"); len(k2) != len(kept) {
		t.Errorf("kept bundles %d, were %d: a restart keeps nothing new", len(k2), len(kept))
	}

	// A newer bundle that fails waits in incoming; restart takes the live one.
	bad := filepath.Join(t.TempDir(), "web.keter")
	testkit.Bundle(t, bad, map[string]testkit.File{"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    host: web.test\n")}})
	since := time.Now()
	dbad, err := CopyAtomic(bad, filepath.Join(h.cfg.Incoming(), "web.keter"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.WaitDeploy(t.Context(), "web", dbad, since); !errors.Is(err, ErrDeployFailed) {
		t.Fatalf("bundle without exec: %v", err)
	}
	if err := h.m.Restart(t.Context(), "web"); err != nil {
		t.Fatal(err)
	}
	s3, _ := h.m.appStatus("web")
	if s3.Live == nil || s3.Live.Version == s2.Live.Version || s3.Live.Digest != d1 {
		t.Fatalf("after the second restart: %+v, want a new version of %.12s", s3.Live, d1)
	}
}

// A restart asked for while a deploy runs does not cut it short: the
// deploy ends (here: its app never answers), then the restart runs.
func TestRestartWaitsForDeployUnderWay(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	d1, _, err := h.place("web", false)
	if err != nil {
		t.Fatal(err)
	}
	units.mu.Lock()
	units.failing["web"] = "never-ready"
	units.mu.Unlock()
	src := filepath.Join(t.TempDir(), "web.keter")
	testkit.Bundle(t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    exec: ../app\n    host: web.test\n    ensure-alive-time-bound: 300000\n")},
		"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if _, err := CopyAtomic(src, filepath.Join(h.cfg.Incoming(), "web.keter"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { units.mu.Lock(); defer units.mu.Unlock(); return len(units.started) == 2 })
	done := make(chan error, 1)
	go func() { done <- h.m.Restart(t.Context(), "web") }()
	time.Sleep(50 * time.Millisecond)
	units.mu.Lock()
	delete(units.failing, "web")
	units.mu.Unlock()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s, _ := h.m.appStatus("web")
	m := h.m.Metrics()
	if s.Live == nil || s.Live.Digest != d1 || m.Deploys[ResultSuperseded] != 0 || m.Deploys[ResultFailed] != 1 {
		t.Fatalf("live %+v, deploys %v: want the deploy to fail on its own (not superseded) and the restart of %.12s live", s.Live, m.Deploys, d1)
	}
}
