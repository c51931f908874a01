package status

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
)

// MaintenanceRequest switches an app's maintenance (POST
// /api/apps/NAME/maintenance on the CLI's socket).
type MaintenanceRequest struct {
	On      bool   `json:"on"`
	Message string `json:"message,omitempty"`
}

func (s *Server) maintenance(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	var req MaintenanceRequest
	if err := readJSON(r, 64<<10, &req); err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"on\": true|false, \"message\": TEXT}: %w", err))
		return
	}
	err := s.o.Core.SetMaintenance(r.Context(), name, req.On, req.Message)
	switch {
	case errors.Is(err, app.ErrUnknownApp):
		writeError(w, http.StatusNotFound, err)
		return
	case errors.Is(err, app.ErrInvalidMessage):
		writeError(w, http.StatusBadRequest, err)
		return
	case errors.Is(err, app.ErrNoMaintenance):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.writeApp(w, r, name)
}

// Maintenance turns an app's maintenance on (with message) or off and
// returns the app as keter then shows it, once nginx serves the change.
func (c *Client) Maintenance(ctx context.Context, name string, on bool, message string) (App, error) {
	var a App
	return a, c.post(ctx, "/api/apps/"+url.PathEscape(name)+"/maintenance", MaintenanceRequest{On: on, Message: message}, &a)
}

// writeMaintenance writes how many apps are in maintenance (always) and
// a series per app in maintenance: one per app whatever its state would
// add a series for every app to every scrape.
func writeMaintenance(b io.Writer, apps []App, header func(name, typ, help string)) {
	n := 0
	for _, a := range apps {
		if a.Maintenance != nil {
			n++
		}
	}
	header("keter_apps_in_maintenance", "gauge", "Apps in maintenance (their hosts answer 503).")
	fmt.Fprintf(b, "keter_apps_in_maintenance %d\n", n)
	if n == 0 {
		return
	}
	header("keter_app_maintenance_since_timestamp_seconds", "gauge", "Since when each app in maintenance is (Unix time); apps not in maintenance are absent.")
	for _, a := range apps {
		if a.Maintenance != nil {
			fmt.Fprintf(b, "keter_app_maintenance_since_timestamp_seconds{app=%q} %d\n", a.Name, a.Maintenance.Since.Unix())
		}
	}
}
