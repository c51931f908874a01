package status

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// Core is what the server needs from the app manager.
type Core interface {
	Status() []app.AppStatus
	Metrics() app.Metrics
	WaitDeploy(ctx context.Context, name, digest string, since time.Time) (app.AppStatus, error)
	RollbackTo(ctx context.Context, name, digest string) (string, error)
	SetMaintenance(ctx context.Context, name string, on bool, message string) error
}

// Units is what the server reads from systemd and journald.
type Units interface {
	List(ctx context.Context, prefix string) ([]unitgen.Status, error)
	Journal(ctx context.Context, unit string, n int) ([]string, error)
}

// Options wires a Server.
type Options struct {
	Core  Core
	Units Units
	// Usage reports what apps use; nil shows none.
	Usage Usage
	// Reloads counts nginx reloads since start; nil reports none.
	Reloads func() uint64
	// MapSwitches counts port map changes since start; nil reports none.
	MapSwitches func() uint64
	// DropDatabase drops an app's plugin database; nil when keter has no
	// postgres plugin.
	DropDatabase func(ctx context.Context, app string) error
	Listen       string // TCP address of the page; "" or "off" disables it
	Socket       string // unix socket for the CLI, created mode 0600
	// SocketGID, when not 0, is the operators' group: the socket is made
	// 0660 for it, and its members may do all but drop a database.
	SocketGID int
	// AppSlice is the cgroup v2 path of the apps' slice; processes in it
	// are refused the page, the API and /metrics.
	AppSlice string
	// DeployGroup names the operators' group, whose members read the
	// apps' log lines on the page as root and JournalGroups do; "" for
	// none.
	DeployGroup string
	// RemoteLogs shows log lines on the page to callers on other hosts,
	// whom keter cannot identify.
	RemoteLogs bool
	Root       string
	Incoming   string
	Version    string
	Log        *slog.Logger

	// Certs lists the hosts' ACME certificates; nil without ACME.
	Certs func() []Cert
	// CertStorage describes the ACME storage; nil without ACME.
	CertStorage func() CertStorage

	// Operator serves keter env and keter restart; nil: refused.
	Operator Operator
	// Canary serves keter canary; nil: refused.
	Canary Canaries
}

// Server serves the page on Listen and the CLI API on Socket.
type Server struct {
	o       Options
	guard   *appGuard
	ready   atomic.Bool
	started time.Time
	tcp     net.Listener
	unix    net.Listener
}

// New makes a Server; Listen opens its sockets and Serve serves them.
func New(o Options) *Server {
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.AppSlice == "" {
		o.AppSlice = "keter.slice"
	}
	guard := &appGuard{slice: o.AppSlice, logs: logPolicy{deployGroup: o.DeployGroup, remote: o.RemoteLogs}}
	return &Server{o: o, started: time.Now(), guard: guard}
}

// SetReady marks keter ready (after its first reconcile).
func (s *Server) SetReady() { s.ready.Store(true) }

// ErrSocketInUse means another keter answers on the socket.
var ErrSocketInUse = errors.New("another keter is listening on the status socket")

// Listen opens the unix socket (an error stops keter: the CLI depends on
// it and a live socket means a second keter on the same root) and the
// page's TCP address (an error is only logged: the apps matter more than
// the page).
func (s *Server) Listen() error {
	if err := os.MkdirAll(filepath.Dir(s.o.Socket), 0o755); err != nil {
		return fmt.Errorf("creating status socket: %w", err)
	}
	if c, err := net.Dial("unix", s.o.Socket); err == nil {
		c.Close()
		return fmt.Errorf("%w: %s", ErrSocketInUse, s.o.Socket)
	}
	os.Remove(s.o.Socket) // stale from a crash
	l, err := net.Listen("unix", s.o.Socket)
	if err != nil {
		return fmt.Errorf("creating status socket: %w", err)
	}
	mode := os.FileMode(0o600)
	if s.o.SocketGID > 0 {
		mode = 0o660
		if err := os.Chown(s.o.Socket, 0, s.o.SocketGID); err != nil {
			l.Close()
			return fmt.Errorf("giving the status socket to the operators' group: %w", err)
		}
	}
	if err := os.Chmod(s.o.Socket, mode); err != nil {
		l.Close()
		return fmt.Errorf("creating status socket: %w", err)
	}
	s.unix = l
	if s.o.Listen != "" && s.o.Listen != "off" {
		t, err := net.Listen("tcp", s.o.Listen)
		if err != nil {
			s.o.Log.Error("status page disabled: cannot listen", "listen", s.o.Listen, "err", err)
		} else {
			s.tcp = t
		}
	}
	return nil
}

// Addr is the page's address, or nil when it is off.
func (s *Server) Addr() net.Addr {
	if s.tcp == nil {
		return nil
	}
	return s.tcp.Addr()
}

// Serve serves until ctx ends, then closes both sockets.
func (s *Server) Serve(ctx context.Context) error {
	if s.unix == nil {
		return errors.New("status server: Listen first")
	}
	var wg sync.WaitGroup
	// Only root and the operators' group reach the socket: they read log lines.
	mux := s.socketHandler()
	socket := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mux.ServeHTTP(w, r.WithContext(withLogs(r.Context(), "")))
	})
	servers := []*http.Server{{Handler: socket, ReadHeaderTimeout: 10 * time.Second, ConnContext: withPeer}}
	listeners := []net.Listener{s.unix}
	if s.tcp != nil {
		page := s.guard.wrap(s.pageHandler(), s.o.Log.Warn)
		servers = append(servers, &http.Server{Handler: page, ReadHeaderTimeout: 10 * time.Second, WriteTimeout: time.Minute})
		listeners = append(listeners, s.tcp)
		s.o.Log.Info("status page listening", "listen", s.tcp.Addr().String())
		if s.o.RemoteLogs && !isLoopback(s.tcp.Addr()) {
			s.o.Log.Warn("status page shows every app's log lines to anyone on another host who reaches it (status.remote-logs)", "listen", s.tcp.Addr().String())
		}
	}
	for i := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := servers[i].Serve(listeners[i]); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.o.Log.Error("status server stopped", "addr", listeners[i].Addr().String(), "err", err)
			}
		}()
	}
	<-ctx.Done()
	for _, srv := range servers {
		// Waiting CLI calls end with the daemon; they see the connection close.
		srv.Close()
	}
	wg.Wait()
	return nil
}

// pageHandler is read-only: the page, the JSON API and /metrics.
func (s *Server) pageHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /api/keter", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.keter()) })
	mux.HandleFunc("GET /api/apps", s.listApps)
	mux.HandleFunc("GET /api/apps/{name}", s.getApp)
	mux.HandleFunc("GET /metrics", s.metrics)
	mux.HandleFunc("GET /api/certs", s.listCerts)
	mux.HandleFunc("GET /api/certs/storage", s.getCertStorage)
	return mux
}

// socketHandler adds the operator's actions to the read-only API.
func (s *Server) socketHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", s.pageHandler())
	mux.HandleFunc("GET /api/apps/{name}/wait", s.wait)
	mux.HandleFunc("POST /api/apps/{name}/rollback", s.rollback)
	mux.HandleFunc("POST /api/apps/{name}/maintenance", s.maintenance)
	mux.HandleFunc("POST /api/apps/{name}/canary", s.canary)
	mux.HandleFunc("POST /api/apps/{name}/jobs/{job}/run", s.runJob)

	mux.HandleFunc("GET /api/apps/{name}/env", s.getEnv)
	mux.HandleFunc("POST /api/apps/{name}/env", s.postEnv)
	mux.HandleFunc("POST /api/apps/{name}/restart", s.restart)
	mux.HandleFunc("POST /api/apps/{name}/postgres/drop", rootOnly(s.dropDatabase))
	return mux
}

// logLines reads ?log=N (default def, at most 200).
func logLines(r *http.Request, def int) int {
	var n int
	if _, err := fmt.Sscanf(r.URL.Query().Get("log"), "%d", &n); err != nil {
		return def
	}
	return max(0, min(n, 200))
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.apps(r.Context(), logLines(r, 0)))
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	for _, a := range s.apps(r.Context(), logLines(r, 10)) {
		if a.Name == name {
			writeJSON(w, http.StatusOK, a)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Errorf("%w: %q", app.ErrUnknownApp, name))
}

// WaitResult is how an awaited deploy ended.
type WaitResult struct {
	Result string `json:"result"` // live | failed | replaced
	Error  string `json:"error,omitempty"`
	App    *App   `json:"app,omitempty"`
}

func (s *Server) wait(w http.ResponseWriter, r *http.Request) {
	name, q := r.PathValue("name"), r.URL.Query()
	since, err := time.Parse(time.RFC3339Nano, q.Get("since"))
	if err != nil || bundle.ValidAppName(name) != nil || len(q.Get("digest")) != 64 {
		writeError(w, http.StatusBadRequest, errors.New("want an app name, ?digest=SHA256 and ?since=RFC3339 time"))
		return
	}
	_, werr := s.o.Core.WaitDeploy(r.Context(), name, q.Get("digest"), since)
	if r.Context().Err() != nil {
		return // the CLI gave up
	}
	res := WaitResult{Result: app.ResultLive}
	switch {
	case errors.Is(werr, app.ErrDeployFailed):
		res.Result, res.Error = app.ResultFailed, werr.Error()
	case errors.Is(werr, app.ErrReplaced):
		res.Result, res.Error = "replaced", werr.Error()
	case werr != nil:
		writeError(w, http.StatusInternalServerError, werr)
		return
	}
	for _, a := range s.apps(r.Context(), 10) {
		if a.Name == name {
			res.App = &a
		}
	}
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	// ?digest= names the kept bundle to bring back (rollback --hosts).
	digest, err := s.o.Core.RollbackTo(r.Context(), name, r.URL.Query().Get("digest"))
	switch {
	case errors.Is(err, app.ErrUnknownApp):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, app.ErrNoPrevious):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		writeError(w, http.StatusInternalServerError, err)
	default:
		writeJSON(w, http.StatusOK, map[string]string{"digest": digest})
	}
}

func (s *Server) dropDatabase(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := bundle.ValidAppName(name); err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	if s.o.DropDatabase == nil {
		writeError(w, http.StatusConflict, errors.New("keter runs without the postgres plugin"))
		return
	}
	for _, st := range s.o.Core.Status() {
		if st.Name == name && (st.Live != nil || st.Deploying) {
			writeError(w, http.StatusConflict, fmt.Errorf("app %q is deployed: remove its bundle from incoming first", name))
			return
		}
	}
	if err := s.o.DropDatabase(r.Context(), name); err != nil {
		writeError(w, http.StatusInternalServerError, err)
		return
	}
	s.o.Log.Info("postgres database dropped", "app", name)
	writeJSON(w, http.StatusOK, map[string]string{"dropped": name})
}

// readJSON decodes a request's JSON body of at most limit bytes.
func readJSON(r *http.Request, limit int64, v any) error {
	body, err := io.ReadAll(io.LimitReader(r.Body, limit))
	if err != nil {
		return err
	}
	return json.Unmarshal(body, v)
}

// writeApp answers with app name as status shows it now (an empty one
// for an app keter no longer has).
func (s *Server) writeApp(w http.ResponseWriter, r *http.Request, name string) {
	for _, a := range s.apps(r.Context(), 0) {
		if a.Name == name {
			writeJSON(w, http.StatusOK, a)
			return
		}
	}
	writeJSON(w, http.StatusOK, App{AppStatus: app.AppStatus{Name: name}})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

type apiError struct {
	Error string `json:"error"`
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, apiError{err.Error()})
}
