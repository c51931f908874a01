package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/status"
)

func cmdMaintenance(ctx context.Context, args []string) int {
	fs := newFlags("maintenance", "[-c CONFIG] on|off APP [--message TEXT]",
		"on: every request for APP's hosts gets 503 with Retry-After and a page: the\nbundle's own "+bundle.MaintenancePage+" if it ships one, else keter's page with\nTEXT. The app keeps running; it stays in maintenance across keter restarts\nand deploys. off: APP's live version serves again. Both return once nginx\nserves the change (on: once no new request reaches the app).")
	cfgPath := configFlag(fs)
	message := fs.String("message", "", "text for the maintenance page (with on)")
	hosts := addHostFlags(fs, false)
	pos, code, ok := parseArgs(fs, args, 2, 2)
	if !ok {
		return code
	}
	on := pos[0] == "on"
	switch {
	case pos[0] != "on" && pos[0] != "off":
		return usageError(fs, fmt.Sprintf("want on or off, not %q", pos[0]))
	case !on && *message != "":
		return usageError(fs, "--message goes with on")
	}
	if hosts.given() {
		return maintenanceHosts(ctx, hosts, pos[1], on, *message)
	}
	_, c, err := connect(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	a, err := c.Maintenance(ctx, pos[1], on, *message)
	var ae *status.APIError
	if errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return fail("no app %q", pos[1])
	}
	if err != nil {
		return fail("%v", err)
	}
	fmt.Println(maintenanceLine(a, on))
	return exitOK
}

// maintenanceLine says what the app's hosts answer now.
func maintenanceLine(a status.App, on bool) string {
	hosts := "its hosts"
	if a.Live != nil && len(a.Live.Hosts) > 0 {
		hosts = strings.Join(a.Live.Hosts, ", ")
	}
	if !on {
		if a.Live == nil {
			return fmt.Sprintf("%s: maintenance off (no version is live)", a.Name)
		}
		return fmt.Sprintf("%s: maintenance off: version %s serves %s", a.Name, a.Live.Version, hosts)
	}
	return fmt.Sprintf("%s: maintenance on: %s answer 503 with %s", a.Name, hosts, pageOf(a.Maintenance))
}

// pageOf names the page an app in maintenance shows.
func pageOf(m *app.MaintenanceStatus) string {
	switch {
	case m == nil:
		return "keter's page"
	case m.OwnPage:
		return "the bundle's " + bundle.MaintenancePage
	case m.Message != "":
		return fmt.Sprintf("keter's page: %q", m.Message)
	}
	return "keter's page"
}

// printMaintenance is keter status APP's line for an app in maintenance.
func printMaintenance(w io.Writer, m *app.MaintenanceStatus) {
	if m == nil {
		return
	}
	fmt.Fprintf(w, "maintenance:  on since %s, hosts answer 503 with %s\n", m.Since.Local().Format(time.DateTime), pageOf(m))
}

// maintenanceNote tells a deployer that the new version is behind the
// maintenance page.
func maintenanceNote(name string, a *status.App) {
	if a != nil && a.Maintenance != nil {
		fmt.Fprintf(os.Stderr, "keter: %s is in maintenance: its hosts answer 503 until 'keter maintenance off %s'\n", name, name)
	}
}
