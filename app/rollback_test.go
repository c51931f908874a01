package app

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// place puts a fresh bundle for web.test as NAME.keter the way `keter
// deploy` does and waits for its outcome.
func (h *harness) place(name string, failing bool) (string, AppStatus, error) {
	h.t.Helper()
	src := filepath.Join(h.t.TempDir(), name+".keter")
	bound := ""
	if failing {
		bound = "    ensure-alive-time-bound: 300000\n"
	}
	testkit.Bundle(h.t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n  - type: webapp\n    exec: ../app\n    host: web.test\n" + bound + "    args: [" + testkit.Token() + "]\n")},
		"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	since := time.Now()
	digest, err := CopyAtomic(src, filepath.Join(h.cfg.Incoming(), name+".keter"), 0o644)
	if err != nil {
		h.t.Fatal(err)
	}
	s, err := h.m.WaitDeploy(h.t.Context(), name, digest, since)
	return digest, s, err
}

func TestWaitDeployKeepAndRollback(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	var digests []string
	for range 4 {
		d, s, err := h.place("web", false)
		if err != nil || s.Live == nil || s.Live.Digest != d {
			t.Fatalf("WaitDeploy: %v, live %+v, want digest %s", err, s.Live, d)
		}
		digests = append(digests, d)
	}
	kept, err := h.m.KeptBundles("web")
	if err != nil || len(kept) != 3 {
		t.Fatalf("kept %+v %v, want keep-bundles (3) of them", kept, err)
	}
	for i, k := range kept {
		if want := digests[3-i]; k.Digest != want {
			t.Fatalf("kept[%d] is %s, want %s (newest first)", i, k.Digest, want)
		}
	}

	units.mu.Lock()
	units.failing["web"] = "never-ready"
	units.mu.Unlock()
	if _, s, err := h.place("web", true); !errors.Is(err, ErrDeployFailed) || s.Live == nil || s.Live.Digest != digests[3] {
		t.Fatalf("failing deploy: %v, live %+v", err, s.Live)
	}
	units.mu.Lock()
	delete(units.failing, "web")
	units.mu.Unlock()

	since := time.Now()
	d, err := h.m.Rollback(t.Context(), "web")
	if err != nil || d != digests[2] {
		t.Fatalf("Rollback: %s %v, want the previous bundle %s", d, err, digests[2])
	}
	if s, err := h.m.WaitDeploy(t.Context(), "web", d, since); err != nil || s.Live.Digest != digests[2] {
		t.Fatalf("after rollback: %v, live %+v", err, s.Live)
	}
	if _, err := h.m.Rollback(t.Context(), "nope"); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("rollback of an unknown app: %v", err)
	}

	m := h.m.Metrics()
	if m.Deploys[ResultLive] != 5 || m.Deploys[ResultFailed] != 1 || m.Duration.Count != 6 || m.Duration.Counts[len(m.Duration.Counts)-1] != 6 {
		t.Fatalf("metrics %+v, want 5 live and 1 failed deploys in the histogram", m)
	}
}

func TestRollbackNeedsAPreviousBundle(t *testing.T) {
	h := newHarness(t, nil)
	if _, _, err := h.place("web", false); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.Rollback(t.Context(), "web"); !errors.Is(err, ErrNoPrevious) {
		t.Fatalf("rollback with only the live bundle kept: %v, want ErrNoPrevious", err)
	}
}
