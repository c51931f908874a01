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

// Canaries is what `keter canary` needs from the app manager.
type Canaries interface {
	SetCanary(ctx context.Context, name string, percent int) error
	PromoteCanary(ctx context.Context, name string) error
	AbortCanary(ctx context.Context, name string) error
}

// CanaryRequest is POST /api/apps/NAME/canary on the CLI's socket: a
// share (Percent set), or Action "promote" or "abort".
type CanaryRequest struct {
	Percent *int   `json:"percent,omitempty"`
	Action  string `json:"action,omitempty"`
}

// Canary actions.
const (
	CanaryPromote = "promote"
	CanaryAbort   = "abort"
)

func (s *Server) canary(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if s.o.Canary == nil {
		writeError(w, http.StatusConflict, errors.New("this keter runs no canaries"))
		return
	}
	var req CanaryRequest
	err := readJSON(r, 64<<10, &req)
	if err == nil && (req.Percent == nil) == (req.Action == "") {
		err = errors.New("give either percent or action")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"percent\": N} or {\"action\": \"promote\"|\"abort\"}: %w", err))
		return
	}
	switch {
	case req.Percent != nil:
		err = s.o.Canary.SetCanary(r.Context(), name, *req.Percent)
	case req.Action == CanaryPromote:
		err = s.o.Canary.PromoteCanary(r.Context(), name)
	case req.Action == CanaryAbort:
		err = s.o.Canary.AbortCanary(r.Context(), name)
	default:
		err = fmt.Errorf("action %q: want promote or abort: %w", req.Action, app.ErrCanaryRefused)
	}
	switch {
	case errors.Is(err, app.ErrUnknownApp):
		writeError(w, http.StatusNotFound, err)
		return
	case errors.Is(err, app.ErrCanaryRefused):
		writeError(w, http.StatusBadRequest, err)
		return
	case errors.Is(err, app.ErrNoCanary), errors.Is(err, app.ErrNotLive):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.writeApp(w, r, name)
}

// Canary sends a canary request and returns the app as keter then shows
// it, once nginx serves the change.
func (c *Client) Canary(ctx context.Context, name string, req CanaryRequest) (App, error) {
	var a App
	return a, c.post(ctx, "/api/apps/"+url.PathEscape(name)+"/canary", req, &a)
}

// writeCanary writes each canary's share and readiness; apps without a
// canary are absent.
func writeCanary(b io.Writer, apps []App, header func(name, typ, help string)) {
	n := 0
	for _, a := range apps {
		if a.Canary != nil {
			n++
		}
	}
	header("keter_apps_with_canary", "gauge", "Apps with a canary (armed or running).")
	fmt.Fprintf(b, "keter_apps_with_canary %d\n", n)
	if n == 0 {
		return
	}
	header("keter_app_canary_percent", "gauge", "The share of new clients each canary gets, in percent.")
	for _, a := range apps {
		if a.Canary != nil {
			fmt.Fprintf(b, "keter_app_canary_percent{app=%q} %d\n", a.Name, a.Canary.Percent)
		}
	}
	header("keter_app_canary_requests_total", "counter", "Requests nginx sent to each version of an app with a canary, since the canary's version started or keter did (role live or canary).")
	for _, a := range apps {
		if c := a.Canary; c != nil && c.Version != nil {
			live := ""
			if a.Live != nil {
				live = a.Live.Version
			}
			fmt.Fprintf(b, "keter_app_canary_requests_total{app=%q,version=%q,role=\"live\"} %d\n", a.Name, live, c.Requests.Live)
			fmt.Fprintf(b, "keter_app_canary_requests_total{app=%q,version=%q,role=\"canary\"} %d\n", a.Name, c.Version.Version, c.Requests.Canary)
		}
	}
	header("keter_app_canary_ready", "gauge", "1 while every instance of the canary runs (its clients reach it), else 0.")
	for _, a := range apps {
		if a.Canary != nil {
			ready := 0
			if a.Canary.Ready {
				ready = 1
			}
			fmt.Fprintf(b, "keter_app_canary_ready{app=%q} %d\n", a.Name, ready)
		}
	}
}
