package app

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// dropInstances drops a bundle whose webapp runs n instances.
func (h *harness) dropInstances(name, host string, n int) {
	h.t.Helper()
	src := filepath.Join(h.t.TempDir(), name)
	y := fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../app\n    host: %s\n    instances: %d\n    args: [%q]\n", host, n, testkit.Token())
	testkit.Bundle(h.t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(y)},
		"app":               {Body: []byte("#!/bin/sh\n"), Mode: 0o755},
	})
	if err := os.Rename(src, filepath.Join(h.cfg.Incoming(), name)); err != nil {
		h.t.Fatal(err)
	}
}

// TestInstances: instances: 3 starts three units, each on a port of its
// own behind a front port of its own, with a spare front (minFronts);
// 3 → 1 → 4 keeps every front (no reload: nginx's servers stay as they
// are) and gives the old versions' ports back once they stopped; a
// restarted keter re-adopts all three without starting anything.
func TestInstances(t *testing.T) {
	units := newFakeUnits()
	h := newHarness(t, units)
	live := func() Live { return h.proxy.app("web") }
	h.dropInstances("web.keter", "web.test", 3)
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
	waitFor(t, func() bool { return live().Version == s.Live.Version })
	three := live()
	if len(three.Ports[0]) != 3 || len(three.Fronts[0]) != minFronts {
		t.Fatalf("ports %v fronts %v, want three instances and %d fronts", three.Ports, three.Fronts, minFronts)
	}
	all := append(slices.Clone(three.Ports[0]), three.Fronts[0]...)
	slices.Sort(all)
	if len(slices.Compact(all)) != 3+minFronts {
		t.Fatalf("ports %v and fronts %v are not %d different ports", three.Ports, three.Fronts, 3+minFronts)
	}
	if len(s.Live.Units) != 3 || !strings.HasSuffix(s.Live.Units[2], "-web0.3.service") {
		t.Fatalf("units %v, want web0.1 to web0.3", s.Live.Units)
	}

	// keter restarts: all three are re-adopted as they run.
	h.stop()
	started := len(units.started)
	h.proxy = &fakeProxy{}
	h.start()
	waitFor(t, func() bool { return live().Version == s.Live.Version })
	if again := live(); !slices.Equal(again.Ports[0], three.Ports[0]) || !slices.Equal(again.Fronts[0], three.Fronts[0]) {
		t.Fatalf("re-adopted: ports %v fronts %v, want %v %v", again.Ports, again.Fronts, three.Ports, three.Fronts)
	}
	if len(units.started) != started {
		t.Fatalf("re-adoption started units: %v", units.started[started:])
	}

	h.dropInstances("web.keter", "web.test", 1)
	waitFor(t, func() bool { v := live().Version; return v != "" && v != s.Live.Version })
	one := live()
	if !slices.Equal(one.Fronts[0], three.Fronts[0]) || len(one.Ports[0]) != 1 {
		t.Fatalf("3 → 1: ports %v fronts %v, want one port and the fronts %v", one.Ports, one.Fronts, three.Fronts)
	}
	waitFor(t, func() bool {
		h.m.ports.mu.Lock()
		defer h.m.ports.mu.Unlock()
		return len(units.names()) == 1 && len(h.m.ports.held) == 1+2*minFronts // the one port, the fronts and the canary fronts
	})
	h.dropInstances("web.keter", "web.test", 4)
	waitFor(t, func() bool { v := live().Version; return v != "" && v != one.Version })
	if four := live(); !slices.Equal(four.Fronts[0], three.Fronts[0]) || len(four.Ports[0]) != 4 {
		t.Fatalf("1 → 4: ports %v fronts %v, want four ports and the fronts %v", four.Ports, four.Fronts, three.Fronts)
	}
}
