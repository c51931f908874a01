package status

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
)

// Operator is what `keter env` and `keter restart` need from the app
// manager; only the CLI's socket serves them.
type Operator interface {
	Env(name string) ([]app.EnvVar, error)
	SetEnv(name string, vars []app.EnvVar) error
	UnsetEnv(name string, names []string) error
	Restart(ctx context.Context, name string) error
	Replace(ctx context.Context, name string) error
}

// ResultStored is an env change kept for the next deploy: --no-restart,
// or no version is live.
const ResultStored = "stored"

// EnvList is GET /api/apps/NAME/env: secret values are never sent.
type EnvList struct {
	Vars []app.EnvVar `json:"vars"`
}

// EnvRequest changes an app's operator env (POST /api/apps/NAME/env):
// Set or Unset, then a replacement of the live version unless NoRestart.
type EnvRequest struct {
	Set       []app.EnvVar `json:"set,omitempty"`
	Unset     []string     `json:"unset,omitempty"`
	NoRestart bool         `json:"no_restart,omitempty"`
}

func (s *Server) operator(w http.ResponseWriter, r *http.Request) (Operator, string, bool) {
	name := r.PathValue("name")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return nil, "", false
	}
	if s.o.Operator == nil {
		writeError(w, http.StatusConflict, errors.New("this keter has no operator env or restart"))
		return nil, "", false
	}
	return s.o.Operator, name, true
}

func (s *Server) getEnv(w http.ResponseWriter, r *http.Request) {
	op, name, ok := s.operator(w, r)
	if !ok {
		return
	}
	vars, err := op.Env(name)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, EnvList{Vars: vars})
}

func (s *Server) postEnv(w http.ResponseWriter, r *http.Request) {
	op, name, ok := s.operator(w, r)
	if !ok {
		return
	}
	var req EnvRequest
	err := readJSON(r, 4<<20, &req)
	if err == nil && (len(req.Set) == 0) == (len(req.Unset) == 0) {
		err = errors.New("give either set or unset")
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("want a JSON body {\"set\": [{\"name\", \"value\", \"secret\"}...]} or {\"unset\": [NAME...]}: %w", err))
		return
	}
	if len(req.Set) > 0 {
		err = op.SetEnv(name, req.Set)
	} else {
		err = op.UnsetEnv(name, req.Unset)
	}
	switch {
	case errors.Is(err, app.ErrInvalidEnv), errors.Is(err, app.ErrNoSuchVar), errors.Is(err, bundle.ErrInvalid):
		writeError(w, http.StatusBadRequest, err)
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	if req.NoRestart {
		writeJSON(w, http.StatusOK, WaitResult{Result: ResultStored})
		return
	}
	s.replace(w, r, op, name, true)
}

func (s *Server) restart(w http.ResponseWriter, r *http.Request) {
	op, name, ok := s.operator(w, r)
	if ok {
		s.replace(w, r, op, name, false)
	}
}

// replace restarts the live version and answers how it went; stored
// says an env change was kept whatever happens.
func (s *Server) replace(w http.ResponseWriter, r *http.Request, op Operator, name string, stored bool) {
	restart := op.Restart
	if stored {
		restart = op.Replace // an env change reaches every unit at once
	}
	err := restart(r.Context(), name)
	if r.Context().Err() != nil {
		return // the CLI gave up; the replacement goes on
	}
	res := WaitResult{Result: app.ResultLive}
	switch {
	case stored && (errors.Is(err, app.ErrNotLive) || errors.Is(err, app.ErrUnknownApp)):
		res = WaitResult{Result: ResultStored, Error: "no version is live: the next deploy gets it"}
	case errors.Is(err, app.ErrUnknownApp):
		writeError(w, http.StatusNotFound, err)
		return
	case errors.Is(err, app.ErrNotLive):
		writeError(w, http.StatusConflict, err)
		return
	case err != nil:
		res = WaitResult{Result: app.ResultFailed, Error: err.Error()}
	}
	for _, a := range s.apps(r.Context(), 10) {
		if a.Name == name {
			res.App = &a
		}
	}
	writeJSON(w, http.StatusOK, res)
}

// Env lists an app's operator variables (secret ones without a value).
func (c *Client) Env(ctx context.Context, name string) ([]app.EnvVar, error) {
	var l EnvList
	return l.Vars, c.do(ctx, "GET", "/api/apps/"+url.PathEscape(name)+"/env", nil, &l)
}

// ChangeEnv sets or unsets operator variables and, unless NoRestart,
// waits for the replacement of the live version.
func (c *Client) ChangeEnv(ctx context.Context, name string, req EnvRequest) (WaitResult, error) {
	var res WaitResult
	return res, c.post(ctx, "/api/apps/"+url.PathEscape(name)+"/env", req, &res)
}

// Restart replaces the live version with its own bundle and waits.
func (c *Client) Restart(ctx context.Context, name string) (WaitResult, error) {
	var res WaitResult
	return res, c.do(ctx, "POST", "/api/apps/"+url.PathEscape(name)+"/restart", nil, &res)
}
