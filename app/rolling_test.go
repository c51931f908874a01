package app

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
)

// rollingUnits is fakeUnits that restarts units in place, recording which
// instance ports were out of rotation at each restart.
type rollingUnits struct {
	*fakeUnits
	proxy *fakeProxy
	app   string

	mu        sync.Mutex
	fail      string // a unit whose restart job fails
	restarted []string
	resting   [][]int // the resting ports the proxy last got, at each restart
	reset     []string
}

func (r *rollingUnits) Restart(ctx context.Context, name string) error {
	l := r.proxy.app(r.app)
	var rest []int
	for p, ok := range l.Resting {
		if ok {
			rest = append(rest, p)
		}
	}
	slices.Sort(rest)
	r.mu.Lock()
	r.restarted = append(r.restarted, name)
	r.resting = append(r.resting, rest)
	fail := r.fail == name
	r.mu.Unlock()
	if fail {
		return errors.New("job failed: " + name)
	}
	r.fakeUnits.mu.Lock()
	fu := r.running[name]
	r.fakeUnits.mu.Unlock()
	if fu == nil {
		return errors.New("no unit " + name)
	}
	if fu.srv != nil {
		fu.srv.Close()
	}
	return r.Start(ctx, fu.unit)
}

func (r *rollingUnits) ResetFailed(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reset = append(r.reset, name)
	return nil
}

// keter restart of an app of three instances restarts each in place, one
// at a time, out of rotation while it does, with its start counter
// flushed; the version stays. An app of one instance, or one whose
// operator env changed since, is replaced by a new version instead, and
// so is every env change (Replace).
func TestRestartInPlace(t *testing.T) {
	h := newHarness(t, nil)
	ru := &rollingUnits{fakeUnits: h.units, proxy: h.proxy, app: "three"}
	h.stop()
	h.unitsAs = ru
	h.start()
	h.dropInstances("three.keter", "three.test", 3)
	h.dropInstances("one.keter", "one.test", 1)
	h.waitStatus("three", func(s AppStatus) bool { return s.Live != nil })
	h.waitStatus("one", func(s AppStatus) bool { return s.Live != nil })
	v := h.m.liveVersion("three")

	if err := h.m.Restart(t.Context(), "three"); err != nil {
		t.Fatal(err)
	}
	if now := h.m.liveVersion("three"); now != v {
		t.Fatalf("live version %s after restart, want %s in place", now.id, v.id)
	}
	var units []string
	for _, in := range v.web[0] {
		units = append(units, in.unit)
	}
	if !slices.Equal(ru.restarted, units) || !slices.Equal(ru.reset, units) {
		t.Fatalf("restarted %v (reset %v), want each instance once, in order: %v", ru.restarted, ru.reset, units)
	}
	for k, rest := range ru.resting {
		if want := []int{v.web[0][k].port}; !slices.Equal(rest, want) {
			t.Errorf("restart %d: resting ports %v, want only its own %v", k, rest, want)
		}
	}
	if l := h.proxy.app("three"); len(l.Resting) != 0 {
		t.Errorf("after the restart, resting %v", l.Resting)
	}

	one := h.m.liveVersion("one")
	if err := h.m.Restart(t.Context(), "one"); err != nil {
		t.Fatal(err)
	}
	if now := h.m.liveVersion("one"); now == one {
		t.Error("an app of one instance was restarted in place, not replaced")
	}

	// An instance that does not come back: the version is replaced, so
	// every instance serves again.
	ru.mu.Lock()
	ru.fail = v.web[0][1].unit
	ru.mu.Unlock()
	if err := h.m.Restart(t.Context(), "three"); err != nil {
		t.Fatalf("restart with an instance that fails to restart: %v, want a replacement", err)
	}
	if got := ru.restarted[len(ru.restarted)-2:]; !slices.Equal(got, []string{v.web[0][0].unit, v.web[0][1].unit}) {
		t.Errorf("last restarts %v, want the first instance, then the failing one", got)
	}
	if now := h.m.liveVersion("three"); now == v {
		t.Fatal("after a failed restart in place, the version was not replaced")
	} else {
		v = now
	}
	if l := h.proxy.app("three"); len(l.Down) != 0 || len(l.Resting) != 0 || len(l.Ports[0]) != 3 {
		t.Errorf("after the replacement: ports %v down %v resting %v, want 3 serving", l.Ports, l.Down, l.Resting)
	}

	n := len(ru.restarted)
	if err := h.m.SetEnv("three", []EnvVar{{Name: "A", Value: "1"}}); err != nil {
		t.Fatal(err)
	}
	if why := h.m.canRoll(v); !strings.Contains(why, "operator env changed") {
		t.Errorf("canRoll after env set --no-restart = %q", why)
	}
	if err := h.m.Restart(t.Context(), "three"); err != nil {
		t.Fatal(err)
	}
	v2 := h.m.liveVersion("three")
	if v2 == v || len(ru.restarted) != n {
		t.Fatalf("restart with a changed env: in place (%d restarts), want a new version", len(ru.restarted)-n)
	}
	if err := h.m.Replace(t.Context(), "three"); err != nil {
		t.Fatal(err)
	}
	if h.m.liveVersion("three") == v2 || len(ru.restarted) != n {
		t.Fatal("Replace restarted in place, want a new version")
	}
}
