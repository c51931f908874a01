package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// TestCanaryValidation: what keter canary refuses, with the class the
// status API maps to its answer.
func TestCanaryValidation(t *testing.T) {
	h := newHarness(t, nil)
	h.drop("web.keter", "web.test")
	h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	ctx := t.Context()
	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"percent over 100", func() error { return h.m.SetCanary(ctx, "web", 101) }, ErrCanaryRefused},
		{"negative percent", func() error { return h.m.SetCanary(ctx, "web", -1) }, ErrCanaryRefused},
		{"unknown app", func() error { return h.m.SetCanary(ctx, "nope", 10) }, ErrUnknownApp},
		{"promote with no canary", func() error { return h.m.PromoteCanary(ctx, "web") }, ErrNoCanary},
		{"abort with no canary", func() error { return h.m.AbortCanary(ctx, "web") }, ErrNoCanary},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	if err := h.m.SetCanary(ctx, "web", 10); err != nil {
		t.Fatal(err)
	}
	if err := h.m.PromoteCanary(ctx, "web"); !errors.Is(err, ErrNoCanary) || !strings.Contains(err.Error(), "waits for its bundle") {
		t.Fatalf("promote before a bundle: %v", err)
	}
	// A canary that changes host names is refused; the live version
	// serves on and the canary stays armed for the next bundle.
	live := h.proxy.app("web").Version
	h.drop("web.keter", "other.test")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == ResultFailed })
	if !strings.Contains(s.LastError, "hosts") || s.Live == nil || s.Live.Version != live || s.Canary == nil || s.Canary.Version != nil {
		t.Fatalf("a canary with other hosts: %+v", s)
	}
}

// TestCanaryLifecycle: arm, the next bundle runs beside the live one on
// the canary fronts, a share change, a canary unit down sends its
// clients to the live version, a keter restart keeps it all, promote
// makes it live on the live fronts; then abort drops the next one.
func TestCanaryLifecycle(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	h.drop("web.keter", "web.test")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s1.Live.Version })
	v1 := h.proxy.app("web")
	fronts, cfronts := v1.Fronts[0], v1.CanaryFronts[0]
	if len(fronts) != minFronts || len(cfronts) != minFronts || slices.ContainsFunc(cfronts, func(f int) bool { return slices.Contains(fronts, f) }) {
		t.Fatalf("fronts %v canary fronts %v: want %d of each, apart", fronts, cfronts, minFronts)
	}
	if err := h.m.SetCanary(ctx, "web", 20); err != nil {
		t.Fatal(err)
	}
	h.drop("web.keter", "web.test")
	waitFor(t, func() bool { return h.proxy.app("web").Canary != nil })
	l := h.proxy.app("web")
	c := l.Canary
	if l.Version != v1.Version || c.Percent != 20 || !c.Ready || slices.Equal(c.Ports[0], v1.Ports[0]) {
		t.Fatalf("canary: live %s (want %s), canary %+v", l.Version, v1.Version, c)
	}
	if !slices.Equal(l.Fronts[0], fronts) || !slices.Equal(l.CanaryFronts[0], cfronts) {
		t.Fatalf("a canary changed the fronts: %v %v", l.Fronts, l.CanaryFronts)
	}
	if err := h.m.SetCanary(ctx, "web", 50); err != nil {
		t.Fatal(err)
	}
	if got := h.proxy.app("web").Canary.Percent; got != 50 {
		t.Fatalf("share %d after --percent 50", got)
	}

	// A canary unit crashing: its clients go to the live version.
	unit := h.m.Status()[0].Canary.Version.Units[0]
	h.units.emit(unitgen.Status{Name: unit, Meta: metaOf(t, h, unit), ActiveState: "activating", SubState: "auto-restart"})
	waitFor(t, func() bool { c := h.proxy.app("web").Canary; return c != nil && !c.Ready })
	if err := h.m.PromoteCanary(ctx, "web"); !errors.Is(err, ErrCanaryRefused) {
		t.Fatalf("promote of a canary that is not serving: %v", err)
	}
	h.units.emit(unitgen.Status{Name: unit, Meta: metaOf(t, h, unit), ActiveState: "active", SubState: "running"})
	waitFor(t, func() bool { c := h.proxy.app("web").Canary; return c != nil && c.Ready })

	// keter restarts: the canary is taken up as it runs.
	h.stop()
	h.proxy = &fakeProxy{}
	h.start()
	waitFor(t, func() bool { return h.proxy.app("web").Canary != nil })
	if again := h.proxy.app("web"); again.Version != v1.Version || again.Canary.Version != c.Version || again.Canary.Percent != 50 {
		t.Fatalf("after a restart: live %s canary %+v", again.Version, again.Canary)
	}

	if err := asRequest(t, func(ctx context.Context) error { return h.m.PromoteCanary(ctx, "web") }); err != nil {
		t.Fatal(err)
	}
	p := h.proxy.app("web")
	if p.Version != c.Version || p.Canary != nil || !slices.Equal(p.Fronts[0], fronts) || !slices.Equal(p.CanaryFronts[0], cfronts) {
		t.Fatalf("promoted: %+v", p)
	}
	waitFor(t, func() bool { return len(h.units.names()) == 1 }) // the old version drained

	// Abort: the next canary drains, the live version's bundle is back in
	// incoming, so a rescan deploys nothing.
	if err := h.m.SetCanary(ctx, "web", 10); err != nil {
		t.Fatal(err)
	}
	h.drop("web.keter", "web.test")
	waitFor(t, func() bool { return h.proxy.app("web").Canary != nil })
	if err := asRequest(t, func(ctx context.Context) error { return h.m.AbortCanary(ctx, "web") }); err != nil {
		t.Fatal(err)
	}
	if a := h.proxy.app("web"); a.Canary != nil || a.Version != c.Version {
		t.Fatalf("aborted: %+v", a)
	}
	waitFor(t, func() bool { return len(h.units.names()) == 1 })
	data, err := os.ReadFile(filepath.Join(h.cfg.Incoming(), "web.keter"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != p.digest(h) {
		t.Fatal("incoming/web.keter is not the live version's bundle after abort: a rescan would deploy the aborted one")
	}
	h.m.Rescan()
	s := h.waitStatus("web", func(s AppStatus) bool { return !s.Deploying })
	if s.Live.Version != c.Version || s.Canary != nil {
		t.Fatalf("after abort and a rescan: %+v", s)
	}
	if s1.Live.Version == s.Live.Version {
		t.Fatal("the promoted version is the first one")
	}
}

// TestPromoteWaitsForADeploy: a promote asked while a deploy of the app
// runs waits for it; when that deploy replaced the canary the operator
// asked to promote, the promote is refused rather than making live a
// version nobody watched, and the canary and live versions are as the
// deploy left them. A keter restart's scan of the canary's own bundle
// does not race a promote into a fresh live version either.
func TestPromoteWaitsForADeploy(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	h.drop("web.keter", "web.test")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	live := s.Live.Version
	if err := h.m.SetCanary(ctx, "web", 20); err != nil {
		t.Fatal(err)
	}
	h.drop("web.keter", "web.test")
	waitFor(t, func() bool { return h.proxy.app("web").Canary != nil })
	first := h.proxy.app("web").Canary.Version

	err := h.whileDeploying("promote", func(ctx context.Context) error { return h.m.PromoteCanary(ctx, "web") })
	if !errors.Is(err, ErrCanaryRefused) || !strings.Contains(err.Error(), first) {
		t.Fatalf("promote of a canary replaced meanwhile: %v", err)
	}
	p := h.proxy.app("web")
	if p.Version != live || p.Canary == nil || p.Canary.Version == first {
		t.Fatalf("after the refused promote: live %s (want %s), canary %+v (not %s)", p.Version, live, p.Canary, first)
	}
	second := p.Canary.Version

	// keter restarts and the operator promotes at once: the start-up scan
	// finds the canary's bundle in incoming, which is no new version.
	h.stop()
	h.proxy = &fakeProxy{}
	h.start()
	if err := asRequest(t, func(ctx context.Context) error { return h.m.PromoteCanary(ctx, "web") }); err != nil {
		t.Fatal(err)
	}
	h.m.Rescan()
	s = h.waitStatus("web", func(s AppStatus) bool { return !s.Deploying })
	if p := h.proxy.app("web"); p.Version != second || p.Canary != nil || s.Live == nil || s.Live.Version != second {
		t.Fatalf("after a restart and a promote: proxy %s status %+v, want %s live and no canary", p.Version, s.Live, second)
	}
}

// TestAbortWaitsForADeploy: an abort asked while a canary bundle is being
// deployed waits for that deploy, then drops the canary it made: its
// clients go back to the live version, its units stop and the live
// bundle is back in incoming.
func TestAbortWaitsForADeploy(t *testing.T) {
	h := newHarness(t, nil)
	ctx := t.Context()
	h.drop("web.keter", "web.test")
	s := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil })
	live := s.Live.Version
	if err := h.m.SetCanary(ctx, "web", 30); err != nil {
		t.Fatal(err)
	}
	if err := h.whileDeploying("abort", func(ctx context.Context) error { return h.m.AbortCanary(ctx, "web") }); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(h.units.names()) == 1 })
	s = h.waitStatus("web", func(s AppStatus) bool { return !s.Deploying })
	if p := h.proxy.app("web"); p.Version != live || p.Canary != nil || s.Canary != nil {
		t.Fatalf("after an abort during the canary's deploy: proxy %s canary %+v, status canary %+v; want %s and none", p.Version, p.Canary, s.Canary, live)
	}
	data, err := os.ReadFile(filepath.Join(h.cfg.Incoming(), "web.keter"))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != s.Live.Digest {
		t.Fatal("incoming/web.keter is not the live bundle after the abort")
	}
}

// whileDeploying drops a web.test bundle, holds its unit's start, asks
// op as a request would and checks op waits for the deploy; then lets
// the deploy go on and returns op's outcome.
func (h *harness) whileDeploying(what string, op func(context.Context) error) error {
	h.t.Helper()
	h.units.mu.Lock()
	h.units.gate, h.units.entered = make(chan struct{}), make(chan string, 8)
	h.units.mu.Unlock()
	h.drop("web.keter", "web.test")
	<-h.units.entered // the deploy's unit is starting
	done := make(chan error, 1)
	go func() { done <- asRequest(h.t, op) }()
	select {
	case err := <-done:
		h.t.Fatalf("%s did not wait for the running deploy: %v", what, err)
	case <-time.After(300 * time.Millisecond):
	}
	h.units.mu.Lock()
	close(h.units.gate)
	h.units.gate = nil
	h.units.mu.Unlock()
	return <-done
}

// digest is the live version's bundle digest.
func (l Live) digest(h *harness) string {
	for _, s := range h.m.Status() {
		if s.Name == l.Name && s.Live != nil {
			return s.Live.Digest
		}
	}
	return ""
}

// asRequest calls f as the status server does for a CLI request: its
// context ends once f returned, and what f started (a drain) must go on.
func asRequest(t *testing.T, f func(context.Context) error) error {
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	return f(ctx)
}

// metaOf reads a unit's metadata from its name.
func metaOf(t *testing.T, h *harness, unit string) unitgen.Meta {
	t.Helper()
	h.units.mu.Lock()
	defer h.units.mu.Unlock()
	fu := h.units.running[unit]
	if fu == nil {
		t.Fatalf("no unit %s", unit)
	}
	return fu.st.Meta
}
