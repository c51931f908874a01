package status

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
)

// SetMaintenance switches the fake's app as the manager does.
func (f *fakeCore) SetMaintenance(ctx context.Context, name string, on bool, message string) error {
	if strings.ContainsRune(message, 0) {
		return app.ErrInvalidMessage
	}
	for i := range f.apps {
		if f.apps[i].Name != name {
			continue
		}
		f.apps[i].Maintenance = nil
		if on {
			f.apps[i].Maintenance = &app.MaintenanceStatus{Maintenance: app.Maintenance{Since: time.Now(), Message: message}}
		}
		return nil
	}
	return app.ErrUnknownApp
}

// TestMaintenanceAPI: the socket switches maintenance, the status, the
// page and /metrics show it, and TCP clients cannot switch it.
func TestMaintenanceAPI(t *testing.T) {
	core := &fakeCore{apps: []app.AppStatus{
		{Name: "web", LastResult: "live", Live: &app.VersionStatus{Version: "v1", Hosts: []string{"web.test"}}},
		{Name: "other", LastResult: "live", Live: &app.VersionStatus{Version: "v2", Hosts: []string{"other.test"}}},
	}}
	s, c := startServer(t, core, fakeUnits{})
	s.SetReady()
	base := "http://" + s.Addr().String()
	ctx := t.Context()

	if resp, err := http.Post(base+"/api/apps/web/maintenance", "application/json", strings.NewReader(`{"on":true}`)); err != nil || resp.StatusCode == 200 {
		t.Fatalf("maintenance over TCP: %v %v, want refused", resp.Status, err)
	}
	a, err := c.Maintenance(ctx, "web", true, "back at <5pm>")
	if err != nil || a.Name != "web" || a.Maintenance == nil || a.Maintenance.Message != "back at <5pm>" || a.State != StateDegraded && a.State != StateLive {
		t.Fatalf("maintenance on: %+v %v", a, err)
	}
	if a, err := c.App(ctx, "web", 0); err != nil || a.Maintenance == nil {
		t.Fatalf("the app's status after on: %+v %v, want it in maintenance", a, err)
	}
	_, metrics := get(t, base+"/metrics")
	for _, line := range []string{"keter_apps_in_maintenance 1", `keter_app_maintenance_since_timestamp_seconds{app="web"} `, "# TYPE keter_app_maintenance_since_timestamp_seconds gauge"} {
		if !strings.Contains(metrics, line) {
			t.Errorf("/metrics lacks %q:\n%s", line, metrics)
		}
	}
	if strings.Contains(metrics, `app="other"`) {
		t.Errorf("/metrics has a maintenance series for an app not in maintenance:\n%s", metrics)
	}
	_, page := get(t, base+"/")
	if !strings.Contains(page, `<span class="state maintenance">maintenance</span>`) || !strings.Contains(page, "back at &lt;5pm&gt;") {
		t.Errorf("the page does not show web in maintenance with its message, escaped:\n%s", page)
	}
	if strings.Count(page, `class="state maintenance"`) != 1 {
		t.Errorf("the page shows more than web in maintenance:\n%s", page)
	}

	var ae *APIError
	if _, err := c.Maintenance(ctx, "nope", true, ""); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("maintenance of an unknown app: %v, want 404", err)
	}
	if _, err := c.Maintenance(ctx, "web", true, "nul\x00"); !errors.As(err, &ae) || ae.Code != 400 {
		t.Fatalf("a refused message: %v, want 400", err)
	}
	if _, err := c.Maintenance(ctx, "../x", true, ""); !errors.As(err, &ae) || ae.Code != 400 && ae.Code != 404 {
		t.Fatalf("an invalid app name: %v, want refused", err)
	}

	if a, err := c.Maintenance(ctx, "web", false, ""); err != nil || a.Maintenance != nil {
		t.Fatalf("maintenance off: %+v %v", a, err)
	}
	_, metrics = get(t, base+"/metrics")
	if !strings.Contains(metrics, "keter_apps_in_maintenance 0\n") || strings.Contains(metrics, "keter_app_maintenance_since") {
		t.Errorf("/metrics after off still shows web in maintenance:\n%s", metrics)
	}
}
