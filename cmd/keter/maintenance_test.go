package main

import (
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/status"
)

func TestMaintenanceLines(t *testing.T) {
	live := &app.VersionStatus{Version: "v9", Hosts: []string{"a.test", "b.test"}}
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, c := range []struct {
		name string
		a    status.App
		on   bool
		want string
	}{
		{"message", status.App{AppStatus: app.AppStatus{Name: "shop", Live: live, Maintenance: &app.MaintenanceStatus{Maintenance: app.Maintenance{Message: "back at 5"}}}}, true,
			`shop: maintenance on: a.test, b.test answer 503 with keter's page: "back at 5"`},
		{"own page", status.App{AppStatus: app.AppStatus{Name: "shop", Live: live, Maintenance: &app.MaintenanceStatus{OwnPage: true}}}, true,
			"shop: maintenance on: a.test, b.test answer 503 with the bundle's config/maintenance.html"},
		{"not live", status.App{AppStatus: app.AppStatus{Name: "shop", Maintenance: &app.MaintenanceStatus{}}}, true,
			"shop: maintenance on: its hosts answer 503 with keter's page"},
		{"off", status.App{AppStatus: app.AppStatus{Name: "shop", Live: live}}, false, "shop: maintenance off: version v9 serves a.test, b.test"},
	} {
		if got := maintenanceLine(c.a, c.on); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}

	var b strings.Builder
	printApp(&b, status.App{AppStatus: app.AppStatus{Name: "shop", Live: live, Maintenance: &app.MaintenanceStatus{Maintenance: app.Maintenance{Since: since, Message: "x"}}}, State: "live"})
	if want := "maintenance:  on since " + since.Local().Format(time.DateTime) + `, hosts answer 503 with keter's page: "x"`; !strings.Contains(b.String(), want) {
		t.Errorf("status APP lacks %q:\n%s", want, b.String())
	}
	b.Reset()
	printApp(&b, status.App{AppStatus: app.AppStatus{Name: "shop", Live: live}, State: "live"})
	if strings.Contains(b.String(), "maintenance") {
		t.Errorf("status APP of an app not in maintenance mentions it:\n%s", b.String())
	}
}
