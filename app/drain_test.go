package app

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// dropDrain drops a bundle for web.test whose config sets drain.
func (h *harness) dropDrain(name, drain string) {
	h.t.Helper()
	src := filepath.Join(h.t.TempDir(), name)
	testkit.Bundle(h.t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("exec: ../app\nhost: web.test\ndrain: " + drain + "\nargs: [" + testkit.Token() + "]\n")},
		"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), name)); err != nil {
		h.t.Fatal(err)
	}
}

// TestDrainFollowsConnections: an old version runs on while connections
// to it are open (up to its bundle's drain), is stopped as soon as none
// is left, and a keter restart in between neither stops it early nor
// forgets it; when its drain runs out it is stopped with connections
// still open.
func TestDrainFollowsConnections(t *testing.T) {
	var open atomic.Int64
	units := newFakeUnits()
	h := &harness{t: t, units: units, proxy: &fakeProxy{}, serving: func([]int) (int, error) { return int(open.Load()), nil }}
	base := newHarness(t, units) // for its config
	base.stop()
	h.cfg = base.cfg
	h.start()

	h.dropDrain("web.keter", "30s")
	v1 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil }).Live
	open.Store(2)
	h.dropDrain("web.keter", "1s")
	v2 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil && s.Live.Version != v1.Version }).Live
	running := func(unit string) bool { return slices.Contains(units.names(), unit) }
	time.Sleep(3 * drainPoll)
	if !running(v1.Units[0]) {
		t.Fatalf("the old version was stopped with 2 connections open and 30s of drain left")
	}

	// keter restarts: the draining version is taken up, not stopped.
	h.stop()
	h.start()
	time.Sleep(3 * drainPoll)
	if !running(v1.Units[0]) {
		t.Fatalf("a keter restart stopped the draining version")
	}
	st, err := loadState(h.m.statePath())
	if err != nil || len(st.Draining) != 1 || st.Draining[0].Version != v1.Version {
		t.Fatalf("state's draining versions: %+v %v, want %s", st.Draining, err, v1.Version)
	}

	if s := h.waitStatus("web", func(AppStatus) bool { return true }); len(s.Draining) != 1 || s.Draining[0].Version != v1.Version || !s.Draining[0].Until.After(time.Now()) {
		t.Fatalf("status draining: %+v, want %s with its deadline", s.Draining, v1.Version)
	}

	open.Store(0)
	waitFor(t, func() bool {
		_, err := os.Stat(v1.Dir)
		return !running(v1.Units[0]) && errors.Is(err, os.ErrNotExist)
	})
	// The state forgets it once it is stopped.
	waitFor(t, func() bool { st, _ := loadState(h.m.statePath()); return len(st.Draining) == 0 })
	if s := h.waitStatus("web", func(AppStatus) bool { return true }); len(s.Draining) != 0 {
		t.Fatalf("status still shows a stopped version draining: %+v", s.Draining)
	}

	// v2's own drain is 1s: it is stopped then, connections or not.
	open.Store(5)
	h.dropDrain("web.keter", "1s")
	h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil && s.Live.Version != v2.Version })
	started := time.Now()
	waitFor(t, func() bool { return !running(v2.Units[0]) })
	if took := time.Since(started); took < 800*time.Millisecond {
		t.Fatalf("v2 stopped %s after the switch with connections open; its drain is 1s", took)
	}
}
