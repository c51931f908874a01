package app

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// newMaintenanceHarness is a harness whose manager has a responder port.
func newMaintenanceHarness(t *testing.T) *harness {
	t.Helper()
	h := newHarness(t, nil)
	h.stop()
	port, err := MaintenancePort(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.maintPort = port
	h.start()
	return h
}

func TestMaintenancePort(t *testing.T) {
	root := t.TempDir()
	cfg, _, err := config.Parse([]byte(fmt.Sprintf("root: %s\nport-manager: {reserve: false, ranges: [{from: 20100, to: 20104}, {from: 20110, to: 20110}]}\n", root)), root)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(cfg.Etc(), 0o711)
	// Ports and fronts of live apps are never taken, nor a port in use.
	state := `{"apps": {"a": {"ports": {"0": 20100}, "fronts": {"0": 20101}}}}`
	if err := os.WriteFile(filepath.Join(cfg.Etc(), "state.json"), []byte(state), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:20102")
	if err != nil {
		t.Skipf("port 20102 is busy here: %v", err)
	}
	defer busy.Close()
	p, err := MaintenancePort(cfg)
	if err != nil || p != 20103 {
		t.Fatalf("first port: %d %v, want 20103 (20100-20102 are taken)", p, err)
	}
	// Recorded: the same port again, even while something listens on it
	// (nginx does).
	l, err := net.Listen("tcp", "127.0.0.1:20103")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if again, err := MaintenancePort(cfg); err != nil || again != p {
		t.Fatalf("second call: %d %v, want the recorded %d", again, err, p)
	}
	f, err := loadMaintenance(maintenancePath(cfg))
	if err != nil || f.Port != p {
		t.Fatalf("recorded %+v %v", f, err)
	}
	// Ranges changed: a port outside them is taken anew.
	cfg.PortManager.Ranges = []config.PortRange{{From: 20110, To: 20110}}
	if moved, err := MaintenancePort(cfg); err != nil || moved != 20110 {
		t.Fatalf("after the ranges changed: %d %v, want 20110", moved, err)
	}
	cfg.PortManager.Ranges = []config.PortRange{{From: 20100, To: 20100}}
	if _, err := MaintenancePort(cfg); !errors.Is(err, ErrNoPorts) {
		t.Fatalf("no free port: %v, want ErrNoPorts", err)
	}
	if err := os.WriteFile(maintenancePath(cfg), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := MaintenancePort(cfg); err == nil || !strings.Contains(err.Error(), "fix or delete it") {
		t.Fatalf("a corrupt file: %v, want an error saying what to do", err)
	}
}

// TestMaintenanceSwitch: on and off reach the proxy and the status, are
// saved, survive a restart and a redeploy, are refused for unknown apps
// and bad messages, are put back when the proxy fails, and end with the
// app's removal.
func TestMaintenanceSwitch(t *testing.T) {
	h := newMaintenanceHarness(t)
	ctx := t.Context()
	h.drop("web.keter", "web.test")
	s1 := h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	h.m.ports.mu.Lock()
	held := h.m.ports.held[h.maintPort]
	h.m.ports.mu.Unlock()
	if !held || h.maintPort == 0 {
		t.Fatalf("the responder's port %d is not held", h.maintPort)
	}
	for _, ps := range s1.Live.Ports {
		if slices.Contains(ps, h.maintPort) {
			t.Fatalf("the app got the responder's port %d", h.maintPort)
		}
	}

	if err := h.m.SetMaintenance(ctx, "nope", true, ""); !errors.Is(err, ErrUnknownApp) {
		t.Fatalf("unknown app: %v", err)
	}
	if err := h.m.SetMaintenance(ctx, "web", true, "bell\a"); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("a control character: %v", err)
	}
	if err := h.m.SetMaintenance(ctx, "web", true, strings.Repeat("x", MaxMaintenanceMessage+1)); !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("a long message: %v", err)
	}
	if l := h.proxy.app("web"); l.Maintenance != nil {
		t.Fatalf("refused switches reached the proxy: %+v", l.Maintenance)
	}

	if err := h.m.SetMaintenance(ctx, "web", true, "migrating\nback soon"); err != nil {
		t.Fatal(err)
	}
	if l := h.proxy.app("web"); l.Maintenance == nil || l.Maintenance.Message != "migrating\nback soon" {
		t.Fatalf("proxy got %+v, want web in maintenance", l.Maintenance)
	}
	st := h.waitStatus("web", func(s AppStatus) bool { return s.Maintenance != nil })
	if st.Maintenance.OwnPage || st.Maintenance.Since.IsZero() {
		t.Fatalf("status %+v", st.Maintenance)
	}
	since := st.Maintenance.Since
	if f, err := loadMaintenance(maintenancePath(h.cfg)); err != nil || f.Apps["web"].Message != "migrating\nback soon" || f.Port != h.maintPort {
		t.Fatalf("saved %+v %v", f, err)
	}
	// A new message keeps the time it began.
	if err := h.m.SetMaintenance(ctx, "web", true, "later"); err != nil {
		t.Fatal(err)
	}
	if st := h.waitStatus("web", func(s AppStatus) bool { return s.Maintenance != nil && s.Maintenance.Message == "later" }); !st.Maintenance.Since.Equal(since) {
		t.Fatalf("since moved from %v to %v", since, st.Maintenance.Since)
	}

	// A page in the live version is the app's own.
	if err := os.WriteFile(filepath.Join(s1.Live.Dir, bundle.MaintenancePage), []byte("own"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.waitStatus("web", func(s AppStatus) bool { return s.Maintenance != nil && s.Maintenance.OwnPage })

	// A restart keeps it and hands it to the proxy at once.
	h.stop()
	h.proxy.mu.Lock()
	h.proxy.last = nil
	h.proxy.mu.Unlock()
	h.start()
	if l := h.proxy.app("web"); l.Maintenance == nil || l.Maintenance.Message != "later" {
		t.Fatalf("after a restart the proxy got %+v", l.Maintenance)
	}

	// A redeploy goes live behind it.
	h.drop("web.keter", "web.test")
	s2 := h.waitStatus("web", func(s AppStatus) bool { return s.Live != nil && s.Live.Version != s1.Live.Version })
	waitFor(t, func() bool { return h.proxy.serving()["web"] == s2.Live.Version })
	if l := h.proxy.app("web"); l.Maintenance == nil {
		t.Fatal("the new version went live outside maintenance")
	}

	// The proxy refuses: the switch fails and the state stays as it was.
	h.proxy.mu.Lock()
	h.proxy.fail = errors.New("nginx says no")
	h.proxy.mu.Unlock()
	if err := h.m.SetMaintenance(ctx, "web", false, ""); err == nil || !strings.Contains(err.Error(), "nginx says no") {
		t.Fatalf("a failing proxy: %v", err)
	}
	h.proxy.mu.Lock()
	h.proxy.fail = nil
	h.proxy.mu.Unlock()
	if f, _ := loadMaintenance(maintenancePath(h.cfg)); f.Apps["web"].Message != "later" {
		t.Fatalf("after a failed off the saved state is %+v", f)
	}
	if st := h.waitStatus("web", func(AppStatus) bool { return true }); st.Maintenance == nil {
		t.Fatal("after a failed off the status says no maintenance")
	}

	if err := h.m.SetMaintenance(ctx, "web", false, ""); err != nil {
		t.Fatal(err)
	}
	if l := h.proxy.app("web"); l.Maintenance != nil || l.Version != s2.Live.Version {
		t.Fatalf("after off the proxy got %+v for %s", l.Maintenance, l.Version)
	}
	if err := h.m.SetMaintenance(ctx, "web", false, ""); err != nil {
		t.Fatalf("off again: %v", err)
	}

	// Removing the app ends its maintenance.
	if err := h.m.SetMaintenance(ctx, "web", true, ""); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(h.cfg.Incoming(), "web.keter"))
	waitFor(t, func() bool {
		f, _ := loadMaintenance(maintenancePath(h.cfg))
		return len(f.Apps) == 0 && f.Port == h.maintPort
	})
}

func TestMaintenanceUnavailable(t *testing.T) {
	h := newHarness(t, nil)
	h.drop("web.keter", "web.test")
	h.waitStatus("web", func(s AppStatus) bool { return s.LastResult == "live" })
	if err := h.m.SetMaintenance(t.Context(), "web", true, ""); !errors.Is(err, ErrNoMaintenance) {
		t.Fatalf("without a responder: %v", err)
	}
}

// A record for an app whose bundle is gone is dropped at start.
func TestMaintenanceForgetsGoneApps(t *testing.T) {
	h := newMaintenanceHarness(t)
	h.stop()
	f := maintenanceFile{Port: h.maintPort, Apps: map[string]Maintenance{"gone": {Message: "x"}}}
	if err := saveMaintenance(maintenancePath(h.cfg), f); err != nil {
		t.Fatal(err)
	}
	h.start()
	h.m.mu.Lock()
	_, kept := h.m.maint.apps["gone"]
	h.m.mu.Unlock()
	if kept {
		t.Fatal("kept the maintenance of an app without a bundle")
	}
}
