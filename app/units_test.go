package app

import (
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hookOf is the stop hook the fake started unit with.
func (f *fakeUnits) hookOf(name string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if fu := f.running[name]; fu != nil {
		return fu.hook
	}
	return nil
}

// TestStopHookNamesFrontAndPort: each webapp unit gets the port map's stop
// hook for its own front port, version port and unit; the front is the
// app's before the unit starts, on the first deploy too.
func TestStopHookNamesFrontAndPort(t *testing.T) {
	h := newHarness(t, nil)
	for range 2 {
		h.drop("web.keter", "web.test")
		s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
		waitFor(t, func() bool { return h.proxy.serving()["web"] == s.Live.Version })
		l := h.proxy.app("web")
		want := []string{"/hook", strconv.Itoa(l.Fronts[0][0]), strconv.Itoa(l.Ports[0][0]), s.Live.Units[0]}
		if got := h.units.hookOf(s.Live.Units[0]); !slices.Equal(got, want) {
			t.Fatalf("stop hook %q, want %q", got, want)
		}
	}
}

// TestStoppedLiveUnitLeavesTheMap: a live webapp unit stopped for good (an
// operator's systemctl stop) is marked down for the proxy, which takes its
// front out of the map; an automatic restart is not.
func TestStoppedLiveUnitLeavesTheMap(t *testing.T) {
	h := newHarness(t, nil)
	h.drop("web.keter", "web.test")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s.Live.Version })
	unit := s.Live.Units[0]
	st, _, _ := h.m.unitStatus(t.Context(), unit)

	restarting := st
	restarting.ActiveState, restarting.SubState, restarting.NRestarts = "activating", "auto-restart", 1
	h.units.emit(restarting)
	h.units.emit(st)
	time.Sleep(50 * time.Millisecond)
	port := h.proxy.app("web").Ports[0][0]
	if l := h.proxy.app("web"); l.Down[port] {
		t.Fatalf("an automatic restart took the front out: %+v", l)
	}

	applies := h.proxy.count()
	stopped := st
	stopped.ActiveState, stopped.SubState = "inactive", "dead"
	h.units.emit(stopped)
	waitFor(t, func() bool { return h.proxy.app("web").Down[port] })
	if h.proxy.count() <= applies {
		t.Fatalf("no proxy apply after the unit stopped")
	}
}

// TestCrashLoopIsStopped: a live unit that keeps restarting, never up for
// the quiet time in between, is stopped once the loop lasted long enough;
// restarts far apart are not a loop.
func TestCrashLoopIsStopped(t *testing.T) {
	crashLoopFor, crashQuiet = 300*time.Millisecond, 100*time.Millisecond
	t.Cleanup(func() { crashLoopFor, crashQuiet = 60*time.Second, 10*time.Second })
	h := newHarness(t, nil)
	h.drop("web.keter", "web.test")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" && s.Live != nil })
	unit := s.Live.Units[0]
	st, _, _ := h.m.unitStatus(t.Context(), unit)
	restart := func(n uint32) {
		x := st
		x.NRestarts = n
		h.units.emit(x)
	}
	// Far apart: an outage ridden out.
	for n := uint32(1); n <= 3; n++ {
		restart(n)
		time.Sleep(150 * time.Millisecond)
	}
	if slices.Contains(h.units.stoppedUnits(), unit) {
		t.Fatal("restarts 150 ms apart (more than the quiet time) were taken for a crash loop")
	}
	for n := uint32(4); n <= 20 && !slices.Contains(h.units.stoppedUnits(), unit); n++ {
		restart(n)
		time.Sleep(30 * time.Millisecond)
	}
	waitFor(t, func() bool { return slices.Contains(h.units.stoppedUnits(), unit) })
	got := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == ResultFailed })
	if !strings.Contains(got.LastError, "kept crashing") {
		t.Fatalf("status error %q does not say why", got.LastError)
	}
}

func (f *fakeUnits) stoppedUnits() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.stopped)
}

func (p *fakeProxy) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.applies
}
