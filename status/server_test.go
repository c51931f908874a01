package status

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/unitgen"
	"github.com/keter-systemd/keter/usage"
)

// fakeCore and fakeUnits stand in for the manager and systemd.
type fakeCore struct {
	apps     []app.AppStatus
	m        app.Metrics
	rollback error
}

func (f *fakeCore) Status() []app.AppStatus { return f.apps }
func (f *fakeCore) Metrics() app.Metrics    { return f.m }
func (f *fakeCore) WaitDeploy(ctx context.Context, name, digest string, since time.Time) (app.AppStatus, error) {
	if digest == strings.Repeat("f", 64) {
		return app.AppStatus{}, app.ErrDeployFailed
	}
	return app.AppStatus{}, nil
}
func (f *fakeCore) RollbackTo(ctx context.Context, name, digest string) (string, error) {
	return strings.Repeat("a", 64), f.rollback
}

type fakeUnits struct{ units []unitgen.Status }

func (f fakeUnits) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	return f.units, nil
}
func (f fakeUnits) Journal(ctx context.Context, unit string, n int) ([]string, error) {
	return []string{"<script>alert(1)</script> from " + unit}, nil
}

// RunID and Finals let a real usage.Tracker read these units.
func (f fakeUnits) RunID(ctx context.Context, unit string) (string, uint64, error) {
	for _, u := range f.units {
		if u.Name == unit {
			return "inv-" + unit, u.Usage.Started, nil
		}
	}
	return "", 0, errors.New("no unit " + unit)
}
func (f fakeUnits) Finals(ctx context.Context, prefix, cursor string, since time.Time) ([]unitgen.Final, string, error) {
	return nil, cursor, nil
}

// running is a usage as systemd reports it for a run started a minute ago.
func running(mem, cpu, tasks uint64) unitgen.Usage {
	u := unitgen.Usage{Started: uint64(time.Now().Add(-time.Minute).UnixMicro()), Figures: unitgen.NoFigures()}
	u.Figures[unitgen.Memory], u.Figures[unitgen.CPU], u.Figures[unitgen.Tasks] = mem, cpu, tasks
	return u
}

func startServer(t *testing.T, core *fakeCore, units fakeUnits, opts ...func(*Options)) (*Server, *Client) {
	t.Helper()
	s := newServer(t, core, units, opts...)
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	return s, serve(t, s)
}

// newServer makes a Server on 127.0.0.1:0 and a socket in a fresh root,
// with opts applied; it does not listen yet.
func newServer(t *testing.T, core *fakeCore, units fakeUnits, opts ...func(*Options)) *Server {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "incoming"), 0o755)
	os.WriteFile(filepath.Join(dir, "incoming", "waiting.keter"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "incoming", ".hidden.keter"), nil, 0o644)
	o := Options{
		Core: core, Units: units, Usage: usage.New(units, "keter-app-", nil),
		Reloads: func() uint64 { return 7 }, MapSwitches: func() uint64 { return 11 },
		Listen: "127.0.0.1:0", Socket: filepath.Join(dir, "etc", "keter.sock"),
		Root: dir, Incoming: filepath.Join(dir, "incoming"), Version: "test",
	}
	for _, f := range opts {
		f(&o)
	}
	return New(o)
}

// serve serves s, which listens already, until the test ends.
func serve(t *testing.T, s *Server) *Client {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return NewClient(s.o.Socket)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServer(t *testing.T) {
	core := &fakeCore{
		apps: []app.AppStatus{
			{Name: "web", LastResult: "live", Live: &app.VersionStatus{Version: "v9", Digest: "d", Hosts: []string{"web.test"}, Units: []string{"keter-app-web-v9-web0.service"}}},
			{Name: "down", LastResult: "failed", LastError: "boom"},
			{Name: "sick", Live: &app.VersionStatus{Version: "v1", Units: []string{"keter-app-sick-v1-web0.service"}}},
		},
		m: app.Metrics{
			Deploys:  map[string]uint64{"live": 3, "failed": 1, "superseded": 0},
			Duration: app.Histogram{Bounds: []float64{0.5, 1}, Counts: []uint64{1, 3}, Count: 4, Sum: 6.5},
		},
	}
	units := fakeUnits{units: []unitgen.Status{
		{Name: "keter-app-web-v9-web0.service", Meta: unitgen.Meta{App: "web", Version: "v9", Stanza: "web0"}, ActiveState: "active", SubState: "running", NRestarts: 2,
			Usage: running(3<<20, 1_500_000_000, 4)},
		{Name: "keter-app-sick-v1-web0.service", Meta: unitgen.Meta{App: "sick", Version: "v1", Stanza: "web0"}, ActiveState: "activating", SubState: "auto-restart"},
	}}
	s, c := startServer(t, core, units)
	base := "http://" + s.Addr().String()
	ctx := t.Context()

	k, err := c.Keter(ctx)
	if err != nil || k.State != "starting" || k.Version != "test" {
		t.Fatalf("keter before ready: %+v %v", k, err)
	}
	s.SetReady()
	apps, err := c.Apps(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, a := range apps {
		states[a.Name] = a.State
	}
	want := map[string]string{"web": StateLive, "down": StateFailed, "sick": StateDegraded, "waiting": StateQueued}
	for n, st := range want {
		if states[n] != st {
			t.Errorf("app %s is %q, want %q (all: %v)", n, states[n], st, states)
		}
	}
	if len(states) != len(want) {
		t.Errorf("apps %v, want exactly %v", states, want)
	}
	web, err := c.App(ctx, "web", 5)
	if err != nil || len(web.Units) != 1 || web.Units[0].Restarts != 2 || !web.Units[0].Live || len(web.Log) != 1 {
		t.Fatalf("app web: %+v %v", web, err)
	}
	// A run already going when keter started counts from then: no CPU yet.
	if u := web.Units[0].Usage; u == nil || u.MemoryBytes == nil || *u.MemoryBytes != 3<<20 || u.CPUNSec == nil || *u.CPUNSec != 1_500_000_000 || u.IOReadBytes != nil {
		t.Fatalf("unit usage %+v: want systemd's figures of its run", u)
	}
	if len(web.Usage) != 1 || web.Usage[0].Stanza != "web0" || *web.Usage[0].MemoryBytes != 3<<20 || *web.Usage[0].CPUNSec != 0 || *web.Usage[0].Tasks != 4 {
		t.Fatalf("app usage %+v: want web0 with memory and tasks now and no CPU since keter started", web.Usage)
	}
	units.units[0].Usage.Figures[unitgen.CPU] += 250_000_000
	var ae *APIError
	if _, err := c.App(ctx, "nope", 0); !errors.As(err, &ae) || ae.Code != 404 {
		t.Fatalf("unknown app: %v", err)
	}

	code, metrics := get(t, base+"/metrics")
	for _, line := range []string{
		`keter_deploys_total{result="live"} 3`, `keter_deploys_total{result="failed"} 1`,
		`keter_deploy_duration_seconds_bucket{le="0.5"} 1`, `keter_deploy_duration_seconds_bucket{le="1"} 3`,
		`keter_deploy_duration_seconds_bucket{le="+Inf"} 4`, `keter_deploy_duration_seconds_sum 6.5`,
		`keter_deploy_duration_seconds_count 4`, `keter_apps{state="live"} 1`, `keter_apps{state="degraded"} 1`,
		`keter_apps{state="queued"} 1`, `keter_apps{state="deploying"} 0`, `keter_nginx_reloads_total 7`, `keter_port_map_switches_total 11`, `keter_ready 1`,
		`keter_app_memory_bytes{app="web",stanza="web0"} 3145728`, `keter_app_tasks{app="web",stanza="web0"} 4`,
		`keter_app_cpu_seconds_total{app="web",stanza="web0"} 0.25`, "# TYPE keter_app_cpu_seconds_total counter",
	} {
		if code != 200 || !strings.Contains(metrics, line+"\n") {
			t.Errorf("/metrics (%d) lacks %q:\n%s", code, line, metrics)
		}
	}
	for _, absent := range []string{"keter_app_io_read_bytes_total", `app="sick"`, `app="down"`} {
		if strings.Contains(metrics, absent) {
			t.Errorf("/metrics has %s, which nothing counted:\n%s", absent, metrics)
		}
	}

	code, page := get(t, base+"/")
	if code != 200 || !strings.Contains(page, `class="version">v9<`) || !strings.Contains(page, "&lt;script&gt;") || strings.Contains(page, "<script>") {
		t.Fatalf("page (%d) lacks the version or does not escape log lines:\n%s", code, page)
	}
	if !strings.Contains(page, "<code>web0</code> 3.0 MiB · 0.25 s CPU · 4 tasks") || !strings.Contains(page, "3.0 MiB · 1.75 s CPU · 4 tasks since") {
		t.Errorf("page lacks the app's or the unit's usage:\n%s", page)
	}

	// Actions exist only on the socket.
	if resp, err := http.Post(base+"/api/apps/web/rollback", "", nil); err != nil || resp.StatusCode == 200 {
		t.Fatalf("rollback over TCP: %v %v, want refused", resp.Status, err)
	}
	if d, err := c.Rollback(ctx, "web"); err != nil || d != strings.Repeat("a", 64) {
		t.Fatalf("rollback: %q %v", d, err)
	}
	core.rollback = app.ErrNoPrevious
	if _, err := c.Rollback(ctx, "web"); !errors.As(err, &ae) || ae.Code != 409 {
		t.Fatalf("rollback without a previous bundle: %v", err)
	}
	if r, err := c.Wait(ctx, "web", strings.Repeat("0", 64), time.Now()); err != nil || r.Result != "live" || r.App == nil {
		t.Fatalf("wait: %+v %v", r, err)
	}
	if r, err := c.Wait(ctx, "web", strings.Repeat("f", 64), time.Now()); err != nil || r.Result != "failed" {
		t.Fatalf("wait on a failing deploy: %+v %v", r, err)
	}
	if err := c.DropDatabase(ctx, "web"); !errors.As(err, &ae) || ae.Code != 409 {
		t.Fatalf("drop without a plugin: %v", err)
	}
}

func TestSocket(t *testing.T) {
	s, _ := startServer(t, &fakeCore{}, fakeUnits{})
	fi, err := os.Stat(s.o.Socket)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	second := New(Options{Socket: s.o.Socket, Listen: "off"})
	if err := second.Listen(); !errors.Is(err, ErrSocketInUse) {
		t.Fatalf("second server on a live socket: %v, want ErrSocketInUse", err)
	}
	if _, err := NewClient(filepath.Join(t.TempDir(), "none.sock")).Keter(t.Context()); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("client without a daemon: %v", err)
	}
}
