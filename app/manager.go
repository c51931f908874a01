package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Options wires a Manager.
type Options struct {
	Config    *config.Config
	Units     Units
	Proxy     Proxy
	Databases Databases // nil when the postgres plugin is not available
	Log       *slog.Logger
	// LookupEnv is keter's own environment, for forward-env.
	LookupEnv func(string) (string, bool)
	// StableWait is how long a bundle's size and mtime must stay unchanged
	// before it is read (the gzip trailer is checked as well).
	StableWait time.Duration
	// OnReady is called once, after the first reconcile.
	OnReady func()
	// StopHook, when set, is the command each webapp unit runs after it
	// stops, to take its front port's element out of the port map.
	StopHook func(front, port int, unit string) []string
	// MinDrain is the least drain time of an old version after the switch
	// (the proxy's bound on kept connections that may still reach it),
	// whatever graceful-drain-micros or the bundle's drain say.
	MinDrain time.Duration
	// Serving counts the connections the programs listening on ports
	// still serve; an old version is stopped once it serves none. nil:
	// it drains for its whole drain time.
	Serving func(ports []int) (int, error)
	// ServingEach is Serving per port, for putting socket-activated
	// apps to sleep; nil: they never sleep (proxied ones still do).
	ServingEach func(ports []int) (map[int]int, error)
	// DeployGID, when not 0, is the operators' group, which may enter
	// incoming/; otherwise only root may.
	DeployGID int
	// Retired, when set, is told the ports of a version that served and
	// is now stopped (the port map forgets their connections).
	Retired func(ports []int)
	// MaintenancePort is the proxy's maintenance responder's (from
	// MaintenancePort); 0 leaves maintenance mode unavailable.
	MaintenancePort int
	// OneOffs runs one-off commands (keter exec); nil: none.
	OneOffs OneOffs
}

// Manager owns every app's lifecycle.
type Manager struct {
	cfg      *config.Config
	units    Units
	proxy    Proxy
	dbs      Databases
	log      *slog.Logger
	lookup   func(string) (string, bool)
	stable   time.Duration
	ready    func()
	hook     func(front, port int, unit string) []string
	drain    time.Duration // graceful-drain-micros
	minDrain time.Duration
	serving  func(ports []int) (int, error)
	gid      int
	retired  func(ports []int)
	oneOffs  OneOffs
	ports    *ports
	sync     *syncer
	rescan   chan struct{}
	// unpacking bounds concurrent unpacks: each holds megabytes of
	// buffers, and inflating more bundles than cores gains nothing.
	unpacking chan struct{}
	// starting bounds the versions whose units are being started (see
	// startSlot). 1000 bundles at once on 2 cores: 4 at once all served
	// in 223–227 s, 8 in 194 s, 16 in 186 s with keter's peak RSS 122 MB
	// instead of 82.
	starting chan struct{}
	// inFlight counts running deploys; when it drops to zero after a
	// burst, the memory the burst used goes back to the OS.
	inFlight atomic.Int64

	mu      sync.Mutex
	live    map[string]*version
	pending map[string][]string // hosts of versions being deployed, by app
	workers map[string]*worker
	status  map[string]*AppStatus
	// draining are old versions still serving, with their deadlines.
	draining map[*version]time.Time
	lastID   int64
	wg       sync.WaitGroup

	metrics metrics // deploy counters for /metrics
	maint   maintenance
	canary  canaries
	opEnv   operatorEnv // keter env: the operators' layer

	// servingEach counts connections per port (watchIdle).
	servingEach func(ports []int) (map[int]int, error)

	// restore are folders of versions a reboot stopped (see restore.go);
	// guarded by mu.
	restore map[string]liveRecord

	// stateWant counts changes that saveState must make durable (guarded
	// by mu); stateSaved is the count the last write covered (by saveMu).
	stateWant  uint64
	saveMu     sync.Mutex
	stateSaved uint64
	savedAt    time.Time     // when the last write ended (by saveMu)
	saveTook   time.Duration // how long it took (by saveMu)

	// workCtx is Run's context, guarded by mu: an app's worker goroutine
	// starts on demand, often for an API request (keter restart, env),
	// and must not end, or leave an old version undrained, when that
	// request's context does.
	workCtx context.Context
}

// New checks the options and makes a Manager; Run starts it.
func New(o Options) (*Manager, error) {
	if o.Config == nil || o.Units == nil || o.Proxy == nil {
		return nil, errors.New("app manager needs a config, units and a proxy")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.LookupEnv == nil {
		o.LookupEnv = os.LookupEnv
	}
	if o.StableWait == 0 {
		o.StableWait = 50 * time.Millisecond
	}
	m := &Manager{
		cfg: o.Config, units: o.Units, proxy: o.Proxy, dbs: o.Databases, log: o.Log,
		lookup: o.LookupEnv, stable: o.StableWait, ready: o.OnReady, hook: o.StopHook, gid: o.DeployGID, retired: o.Retired, oneOffs: o.OneOffs,
		drain:     time.Duration(o.Config.GracefulDrainMicros) * time.Microsecond,
		minDrain:  o.MinDrain,
		serving:   o.Serving,
		draining:  map[*version]time.Time{},
		ports:     newPorts(o.Config.PortManager.Ranges),
		rescan:    make(chan struct{}, 1),
		unpacking: make(chan struct{}, max(2, runtime.GOMAXPROCS(0))),
		starting:  make(chan struct{}, max(8, 4*runtime.GOMAXPROCS(0))),
		live:      map[string]*version{},
		pending:   map[string][]string{},
		workers:   map[string]*worker{},
		status:    map[string]*AppStatus{},
	}
	m.sync = newSyncer(o.Proxy, m.snapshot)
	m.servingEach = o.ServingEach
	m.maint = maintenance{port: o.MaintenancePort, apps: map[string]Maintenance{}}
	if o.MaintenancePort != 0 {
		m.ports.Hold(o.MaintenancePort)
	}
	return m, nil
}

// Rescan asks for the incoming folder to be read again (SIGHUP).
func (m *Manager) Rescan() {
	select {
	case m.rescan <- struct{}{}:
	default:
	}
}

// Run creates the root layout, re-adopts what still runs, then follows the
// incoming folder until ctx ends. It waits for every goroutine it started.
func (m *Manager) Run(ctx context.Context) error {
	defer m.wg.Wait()
	m.mu.Lock()
	m.workCtx = ctx
	m.mu.Unlock()
	if err := m.layout(); err != nil {
		return fmt.Errorf("creating root layout: %w", err)
	}
	if err := m.loadMaintenanceState(); err != nil {
		return err
	}
	if m.cfg.PortManager.Reserving() {
		if list, err := reservePorts(reservedPortsFile, filepath.Join(m.cfg.Etc(), "reserved-ports"), m.cfg.PortManager.Ranges); err != nil {
			m.log.Warn("could not reserve app ports from the kernel's ephemeral ports; an app may meet 'address already in use'", "err", err)
		} else {
			m.log.Info("app ports reserved from ephemeral use", "ip_local_reserved_ports", list)
		}
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.sync.Run(ctx) }()
	// Subscribed before reconcile reads the units, so no change is
	// missed; read once reconcile has made the live table.
	events, err := m.units.Subscribe(ctx, unitPrefix)
	if err != nil {
		return fmt.Errorf("following app units: %w", err)
	}
	if err := m.reconcile(ctx); err != nil {
		return err
	}
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.followUnits(ctx, events) }()
	m.wg.Add(1)
	go func() { defer m.wg.Done(); m.watchIdle(ctx) }()
	w, err := newWatcher(m.cfg.Incoming())
	if err != nil {
		return err
	}
	defer w.Close()
	m.scan(ctx)
	if m.ready != nil {
		m.ready()
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.rescan:
			m.log.Info("rescanning incoming folder")
			m.scan(ctx)
		case name, ok := <-w.Names:
			if !ok {
				return errors.New("incoming folder watcher stopped")
			}
			m.look(ctx, name)
		case err := <-w.Errors:
			m.log.Error("watching incoming folder", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				m.scan(ctx) // events were lost: look at everything
			}
		}
	}
}

// layout makes the root's folders with their modes. Bundles in incoming/
// hold apps' secrets: only root (and the operators' group) may enter it,
// whatever umask the one who copied a bundle had. nginx (static files)
// must traverse temp/ and etc/, but no one else needs to list them.
func (m *Manager) layout() error {
	incoming := os.FileMode(0o700)
	if m.gid != 0 {
		incoming = 0o770 | os.ModeSetgid // new bundles get the group
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
		gid  int
	}{{m.cfg.Root, 0o755, 0}, {m.cfg.Incoming(), incoming, m.gid}, {m.cfg.Temp(), 0o711, 0}, {m.cfg.Etc(), 0o711, 0}, {m.envDir(), 0o700, 0}} {
		if err := os.MkdirAll(d.path, d.mode.Perm()); err != nil {
			return err
		}
		if err := os.Chown(d.path, 0, d.gid); err != nil {
			return err
		}
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
	}
	return nil
}

// look turns "something happened to NAME.keter" into a deploy or remove.
func (m *Manager) look(ctx context.Context, file string) {
	path := filepath.Join(m.cfg.Incoming(), file)
	name, err := bundle.AppName(path)
	if err != nil {
		m.log.Error("refusing bundle", "bundle", file, "err", err)
		return
	}
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		m.enqueue(ctx, name, request{remove: true})
		return
	}
	m.enqueue(ctx, name, request{path: path})
}

// scan deploys every bundle (unchanged ones are skipped by digest) and
// removes apps whose bundle is gone.
func (m *Manager) scan(ctx context.Context) {
	entries, err := os.ReadDir(m.cfg.Incoming())
	if err != nil {
		m.log.Error("reading incoming folder", "err", err)
		return
	}
	present := map[string]bool{}
	for _, e := range entries {
		if !isBundleFile(e.Name()) || e.IsDir() {
			continue
		}
		m.look(ctx, e.Name())
		if name, err := bundle.AppName(e.Name()); err == nil {
			present[name] = true
		}
	}
	m.mu.Lock()
	var gone []string
	for name := range m.live {
		if !present[name] {
			gone = append(gone, name)
		}
	}
	m.mu.Unlock()
	for _, name := range gone {
		m.enqueue(ctx, name, request{remove: true})
	}
}

// snapshot is the desired proxy state: every live version, sorted.
func (m *Manager) snapshot() []Live {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Live, 0, len(m.live))
	for _, v := range m.live {
		l := v.asLive()
		l.Maintenance = m.maintenanceOf(v.app)
		l.Canary = m.canaryLive(v.app)
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// newVersionID is unique and increasing within this root: time-based so a
// restarted keter never reuses one.
func (m *Manager) newVersionID() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := time.Now().UnixMicro()
	if id <= m.lastID {
		id = m.lastID + 1
	}
	m.lastID = id
	return strconv.FormatInt(id, 36)
}

func (m *Manager) envDir() string    { return filepath.Join(m.cfg.Etc(), "env") }
func (m *Manager) statePath() string { return filepath.Join(m.cfg.Etc(), "state.json") }

// stateSaveGap bounds state writes in a burst to four a second: each
// writes every app (1000 bundles dropped at once: 4.5 s of keter's CPU in
// about a thousand saves), and a switch waits for its save at most this
// long more. With many apps the gap is stateSaveFactor times the last
// write's duration when that is longer, up to stateSaveMaxGap, so that
// writing takes a fortieth of a burst.
const (
	stateSaveGap    = 250 * time.Millisecond
	stateSaveMaxGap = time.Second
	stateSaveFactor = 40
)

// saveState writes the live table; failures are logged, since the units
// keep running and the next save will catch up.
// saveState returns once state.json holds what the caller changed before
// calling it. Saves that wait while another writes share the next write
// (a group commit), and the file is written outside mu: with many apps
// going live at once each save is a marshal of every app and an fsync,
// which one at a time under the manager's lock made a queue of them all.
// Writes are at least stateSaveGap apart.
func (m *Manager) saveState() {
	m.mu.Lock()
	m.stateWant++
	want := m.stateWant
	m.mu.Unlock()
	m.saveMu.Lock()
	defer m.saveMu.Unlock()
	if m.stateSaved >= want {
		return // a write that began after our change covered it
	}
	// Back-to-back saves wait for the gap; those that come meanwhile
	// share the write.
	gap := min(max(stateSaveGap, stateSaveFactor*m.saveTook), stateSaveMaxGap)
	if wait := gap - time.Since(m.savedAt); wait > 0 {
		time.Sleep(wait)
	}
	began := time.Now()
	m.mu.Lock()
	s := stateFile{Apps: map[string]liveRecord{}}
	for name, v := range m.live {
		s.Apps[name] = v.record()
	}
	s.Draining = m.drainingRecords()
	s.Canaries = m.canaryRecords()
	seq := m.stateWant
	data, err := s.marshal() // under mu: the records share the versions' slices
	m.mu.Unlock()
	if err == nil {
		err = atomicfile.Write(m.statePath(), data, 0o600)
	}
	if err != nil {
		m.log.Error("saving state", "err", err)
		return
	}
	m.stateSaved = seq
	m.savedAt = time.Now()
	m.saveTook = m.savedAt.Sub(began)
}

func isBundleFile(name string) bool {
	return filepath.Ext(name) == ".keter" && name[0] != '.'
}
