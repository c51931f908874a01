package nginx

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/config"

	"github.com/keter-systemd/keter/internal/atomicfile"
)

// Units is what the manager needs from systemd; keter's dbus package
// satisfies it. Each call returns once systemd's job has finished.
type Units interface {
	StartTransient(ctx context.Context, name string, props []sddbus.Property) error
	Reload(ctx context.Context, name string) error
	Signal(ctx context.Context, name string, sig syscall.Signal) error
	ActiveState(ctx context.Context, name string) (string, error)
	// MainPID is the unit's main process, 0 when it has none.
	MainPID(ctx context.Context, name string) (uint32, error)
	Stop(ctx context.Context, name string) error
}

// restartDelay is how soon systemd restarts a managed nginx that died.
const restartDelay = 100 * time.Millisecond

// DefaultUnit is managed mode's nginx unit.
const DefaultUnit = "keter-nginx.service"

// ErrConfigTest marks a config `nginx -t` refused; the error text carries
// nginx's own message.
var ErrConfigTest = errors.New("nginx refused the new config")

// Option changes a Manager's defaults.
type Option func(*Manager)

// WithUnitName names managed mode's nginx unit (tests use unique names).
func WithUnitName(name string) Option { return func(m *Manager) { m.unit = name } }

// PortMap points front ports at versions' own ports; the portmap package
// implements it with nftables.
type PortMap interface {
	Setup(ctx context.Context) error
	Apply(ctx context.Context, want map[int]int) error
	Current(ctx context.Context) (map[int]int, error)
	// BindProcess makes the map redirect only connections of pid's
	// cgroup: nginx's master, whose workers share it.
	BindProcess(ctx context.Context, pid int) error
	// StartHook is what nginx's unit runs before each start to bind the
	// map to the cgroup of that start, with the scripts in the folder hooks.
	StartHook(hooks string) []string
	// ForgetFinished forgets the kernel's translations of finished
	// connections from any of fronts to port, so that no new connection
	// takes one; open connections are left to nginx.
	ForgetFinished(port int, fronts ...int) (int, error)
}

// WithPortMap switches versions by pm: nginx proxies to each webapp's
// stable front port and a new version needs no reload.
func WithPortMap(pm PortMap) Option { return func(m *Manager) { m.pm = pm } }

// WithSystemConf is the system nginx's main config that system mode tests
// with `nginx -t -c`; empty means nginx's built-in default.
func WithSystemConf(path string) Option { return func(m *Manager) { m.systemConf = path } }

// Manager drives one nginx: it renders, tests, installs and reloads.
// Its methods are safe to call concurrently; they run one at a time.
type Manager struct {
	g          *config.Config
	units      Units
	log        *slog.Logger
	unit       string
	systemConf string
	paths      Paths
	conf       string // the file Apply installs: whole conf or include

	pm PortMap // nil: a new version's port is reloaded into nginx

	maintenance int // the maintenance responder's port; 0: none

	certs     Certs // nil: no ACME
	acme      *ACME
	last      []App           // what Apply was last given, for Refresh
	acmeHosts []string        // the last rendered config's ACME hosts
	waiting   map[string]bool // requires-secure hosts logged as waiting

	mu       sync.Mutex
	mapped   map[int]int // what pm holds; nil until read
	missing  map[int]int // elements of mapped the kernel lacked at the last check
	cleanAt  *uint32     // the nftables generation of the last check that found mapped whole
	gen      string      // the generation of the config nginx was last seen serving
	pid      uint32      // nginx's main process when last looked at
	reloads  atomic.Uint64
	switches atomic.Uint64
	restarts atomic.Uint64

	reloaded time.Time // the last reload's signal (see pace.go); guarded by mu
	// errorPagesOf is each app's version folder whose error pages are in
	// ErrorDir: a version's pages are copied once, not at every apply
	// (1000 apps: 1.8 s of keter's CPU in 75 applies). Used by apply.
	errorPagesOf map[string]string
	parseCPU     time.Duration // CPU the last `nginx -t` took; guarded by mu
}

// New makes a Manager for g's nginx mode. It touches nothing until Start.
func New(g *config.Config, units Units, log *slog.Logger, opts ...Option) *Manager {
	if log == nil {
		log = slog.Default()
	}
	m := &Manager{g: g, units: units, log: log, unit: DefaultUnit}
	if g.Nginx.Service != "" {
		m.unit = g.Nginx.Service
	}
	for _, o := range opts {
		o(m)
	}
	prefix := filepath.Join(g.Etc(), "nginx")
	m.paths = Paths{Prefix: prefix, PidFile: filepath.Join(prefix, "nginx.pid"), User: workerUser(), IPv6: ipv6(), MaxFiles: maxFiles(), Control: true, Mapped: m.pm != nil}
	m.paths.ACME = m.acme
	if m.maintenance != 0 {
		m.paths.Maintenance, m.paths.MaintenanceDir = m.maintenance, filepath.Join(g.Etc(), "maintenance")
	}
	m.paths.ErrorDir = filepath.Join(g.Etc(), "errors")
	if m.pm != nil {
		m.paths.CanaryDir = filepath.Join(g.Etc(), "canary")
	}
	m.conf = filepath.Join(prefix, "nginx.conf")
	if g.Nginx.Mode == config.ModeSystem {
		m.conf = g.Nginx.IncludeFile
	}
	return m
}

// Unit is the systemd unit this manager reloads.
func (m *Manager) Unit() string { return m.unit }

// ConfigPath is the file Apply installs.
func (m *Manager) ConfigPath() string { return m.conf }

// Reloads counts the reloads Apply has done.
func (m *Manager) Reloads() uint64 { return m.reloads.Load() }

// Switches counts the port map changes Apply has made.
func (m *Manager) Switches() uint64 { return m.switches.Load() }

func (m *Manager) managed() bool { return m.g.Nginx.Mode != config.ModeSystem }

// workerUser picks who nginx's workers run as: they must read the
// unpacked (world-readable) bundles and nothing more.
func workerUser() string {
	if _, err := user.Lookup("www-data"); err == nil {
		return "www-data"
	}
	return "nobody"
}

// maxFiles is the open-file limit nginx may raise itself to: up to 65536,
// within the hard limit keter (and so its systemd) runs under.
func maxFiles() int {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0
	}
	return int(min(l.Max, 65536))
}

func ipv6() bool {
	l, err := net.Listen("tcp6", "[::]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// Start brings nginx up. Managed: if the unit is already active (keter
// restarted) it is adopted as is; otherwise an empty config is tested and
// the unit started. System: the include file is created empty if missing
// and nginx reloaded; an existing one stays until the first Apply.
func (m *Manager) Start(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.paths.HTTP2On = http2On(ctx, m.g.Nginx.Binary)
	if err := os.MkdirAll(filepath.Join(m.paths.Prefix, "tls"), 0o700); err != nil {
		return fmt.Errorf("creating nginx folder: %w", err)
	}
	if err := os.Chmod(m.paths.Prefix, 0o755); err != nil {
		return fmt.Errorf("creating nginx folder: %w", err)
	}
	if !m.managed() {
		if err := m.bind(ctx); err != nil {
			return err
		}
		if _, err := os.Stat(m.conf); err == nil {
			m.log.Info("keeping the existing nginx include until the first apply", "file", m.conf, "unit", m.unit)
			return nil
		}
		return m.apply(ctx, nil)
	}
	state, err := m.units.ActiveState(ctx, m.unit)
	if err != nil {
		return fmt.Errorf("asking the state of %s: %w", m.unit, err)
	}
	if state == "active" || state == "reloading" || state == "activating" {
		m.log.Info("adopting the running nginx", "unit", m.unit)
		return m.bind(ctx)
	}
	out, _, err := m.render(ctx, nil)
	if err != nil {
		return err
	}
	if err := m.install(ctx, out.Main); err != nil {
		return err
	}
	os.Remove(m.paths.PidFile)
	if err := m.units.StartTransient(ctx, m.unit, m.unitProperties()); err != nil {
		return fmt.Errorf("starting %s: %w", m.unit, err)
	}
	if err := m.waitListening(ctx); err != nil {
		return err
	}
	m.log.Info("nginx started", "unit", m.unit, "config", m.conf)
	return m.bind(ctx)
}

func (m *Manager) unitProperties() []sddbus.Property {
	bin := m.g.Nginx.Binary
	base := []string{bin, "-p", m.paths.Prefix, "-c", m.conf}
	// PropExecStart's bool is D-Bus's ignore-failure ("-" in a unit file),
	// whatever go-systemd calls it: true made a SIGKILLed master count as a
	// success, so Restart=on-failure never restarted nginx. No "$" in any
	// command: systemd 252 writes it back in a way its own parser garbles
	// at the next daemon-reload (so not kill -HUP $MAINPID; keter signals
	// nginx through systemd itself).
	reload := sddbus.PropExecStart(append(base, "-s", "reload"), false)
	reload.Name = "ExecReload"
	var pre []sddbus.Property
	if m.pm != nil {
		// The map's rule matches this start's cgroup before nginx takes
		// a connection, whether keter runs or not.
		pre = append(pre, sddbus.PropExecStart(m.pm.StartHook(m.g.Hooks()), true))
		pre[0].Name = "ExecStartPre"
	}
	return append(pre, []sddbus.Property{
		sddbus.PropDescription("keter front door (nginx)"),
		sddbus.PropType("exec"),
		sddbus.PropExecStart(base, false),
		reload,
		{Name: "Restart", Value: godbus.MakeVariant("on-failure")},
		// Every app is offline while nginx is down: come back at once.
		{Name: "RestartUSec", Value: godbus.MakeVariant(uint64(restartDelay / time.Microsecond))},
		// A crash loop still ends: 20 starts within 10 s.
		{Name: "StartLimitBurst", Value: godbus.MakeVariant(uint32(20))},
		{Name: "StartLimitIntervalUSec", Value: godbus.MakeVariant(uint64(10 * time.Second / time.Microsecond))},
		{Name: "KillMode", Value: godbus.MakeVariant("mixed")},
		{Name: "KillSignal", Value: godbus.MakeVariant(int32(syscall.SIGQUIT))},
		{Name: "TimeoutStopUSec", Value: godbus.MakeVariant(uint64(10 * time.Second / time.Microsecond))},
		{Name: "CollectMode", Value: godbus.MakeVariant("inactive-or-failed")},
		{Name: "SyslogIdentifier", Value: godbus.MakeVariant("keter-nginx")},
	}...)
}

// waitListening waits until nginx wrote its pid file, which it does after
// binding its sockets, or the unit failed (e.g. a port in use).
func (m *Manager) waitListening(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	started := time.Now()
	for {
		state, err := m.units.ActiveState(ctx, m.unit)
		if err == nil && (state == "failed" || state == "inactive") {
			return fmt.Errorf("starting %s: unit is %s (see journalctl -u %s)", m.unit, state, m.unit)
		}
		if _, err := os.Stat(m.paths.PidFile); err == nil && state == "active" {
			return nil
		}
		// With Restart=on-failure a master that exits at start (a port in
		// use) is restarted rather than failed: no main process for a
		// second means it keeps exiting.
		if pid, err := m.units.MainPID(ctx, m.unit); err == nil && pid == 0 && time.Since(started) > time.Second {
			return fmt.Errorf("starting %s: nginx keeps exiting at start (a listener's port in use?); see journalctl -u %s", m.unit, m.unit)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s to listen: %w", m.unit, ctx.Err())
		case <-tick.C:
		}
	}
}

// Stop stops managed mode's nginx; system mode leaves nginx alone.
func (m *Manager) Stop(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.managed() {
		return nil
	}
	if err := m.units.Stop(ctx, m.unit); err != nil {
		return fmt.Errorf("stopping %s: %w", m.unit, err)
	}
	return nil
}

// Apply makes nginx serve exactly apps. It renders, writes a new file,
// tests the full resulting config with `nginx -t`, renames it into place
// and reloads through systemd. If rendering, the test or the reload fails
// the previous config stays in force and the error says why. An unchanged
// config is not reloaded.
func (m *Manager) Apply(ctx context.Context, apps []App) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.last = apps
	return m.served(m.apply(ctx, apps))
}

// render renders and writes the certificate files the config needs.
func (m *Manager) render(ctx context.Context, apps []App) (*Output, bool, error) {
	out, err := Render(m.g, apps, m.paths)
	if err != nil {
		return nil, false, fmt.Errorf("rendering nginx config: %w", err)
	}
	if err := m.ensureCerts(ctx, out); err != nil {
		return nil, false, err
	}
	changed, err := buildConcat(out.Concat)
	if err != nil {
		return nil, false, fmt.Errorf("building certificate chains: %w", err)
	}
	if err := m.writeAuth(out.Auth); err != nil {
		return nil, false, err
	}
	return out, changed, nil
}

func (m *Manager) apply(ctx context.Context, apps []App) (err error) {
	// Pages first: a host is sent to the responder only once its page is there.
	if err := errors.Join(m.writePages(apps), m.writeErrorPages(apps)); err != nil {
		return err
	}
	defer func() {
		if err == nil {
			m.cleanPages(apps)
			m.cleanErrorPages(apps)
		}
	}()
	if m.pm == nil {
		p, err := m.prepare(ctx, apps)
		if err != nil || p == nil {
			return err
		}
		return m.load(ctx, len(apps), p)
	}
	want := map[int]int{}
	front := make([]App, len(apps))
	for i, a := range apps {
		for idx, fronts := range a.Fronts {
			mapFronts(want, fronts, a.Ports[idx], a.Down, a.Resting)
		}
		m.mapCanary(want, a)
		a.Ports = a.Fronts
		front[i] = a
	}
	mapMaintenance(want, apps, m.paths.Maintenance)
	// The config is tested before the map changes, so a refused config
	// switches nothing.
	p, err := m.prepare(ctx, front)
	if err != nil {
		return err
	}
	if m.mapped == nil {
		if m.mapped, err = m.pm.Current(ctx); err != nil {
			return errors.Join(err, m.undo(p))
		}
	}
	// A front port nginx still proxies to keeps its target until the
	// new config is loaded.
	first := maps.Clone(want)
	moved := map[int]int{} // front → the port it no longer goes to
	for f, to := range m.mapped {
		if _, ok := first[f]; !ok {
			first[f] = to
		} else if first[f] != to {
			moved[f] = to
		}
	}
	if !maps.Equal(first, m.mapped) {
		if err := m.pm.Apply(ctx, first); err != nil {
			return errors.Join(err, m.undo(p))
		}
		m.mapped = first
		m.switches.Add(1)
	}
	if p != nil {
		if err := m.load(ctx, len(apps), p); err != nil {
			return err
		}
	}
	if !maps.Equal(want, m.mapped) {
		if err := m.pm.Apply(ctx, want); err != nil {
			return err
		}
		m.mapped = want
	}
	if err := m.writeGates(apps); err != nil {
		return err
	}
	if err := m.writeCanaryFlags(apps); err != nil {
		return err
	}
	m.forgetFinished(moved)
	return nil
}

// mapFronts sends each of a stanza's fronts to its instance's port, and
// each spare front (beyond the instances) to the instances that are up,
// in turn. A front of an instance that is down has no element: nginx's
// connection is refused and it tries another server. A front of a
// resting instance goes to the instances up, as a spare's does, so
// nginx sees no refusal.
func mapFronts(want map[int]int, fronts, ports []int, down, resting map[int]bool) {
	var up []int
	for _, p := range ports {
		if !down[p] && !resting[p] {
			up = append(up, p)
		}
	}
	for k, f := range fronts {
		switch {
		case k < len(ports) && !resting[ports[k]]:
			if !down[ports[k]] {
				want[f] = ports[k]
			}
		case k < len(ports) && len(up) > 0:
			want[f] = up[k%len(up)] // resting
		case k < len(ports):
			if !down[ports[k]] {
				want[f] = ports[k] // every instance resting: none is left out
			}
		case len(up) > 0:
			want[f] = up[(k-len(ports))%len(up)]
		}
	}
}

// forgetFinished forgets the finished connections to the ports the map
// no longer sends fronts to. Open ones are nginx's: it retires them within
// SwitchBound, and the old version serves them until then.
// One pass over the kernel's table per old port: an app's fronts (its
// spares too) mostly lead to the same one.
func (m *Manager) forgetFinished(moved map[int]int) {
	byPort := map[int][]int{}
	for f, old := range moved {
		byPort[old] = append(byPort[old], f)
	}
	for old, fronts := range byPort {
		if _, err := m.pm.ForgetFinished(old, fronts...); err != nil {
			m.log.Warn("forgetting finished connections to an old version", "port", old, "err", err)
		}
	}
}

// prepared is a rendered config installed (tested) but not yet loaded.
type prepared struct {
	out     *Output
	old     []byte // the file it replaced
	existed bool
	start   time.Time
	tested  time.Time
}

// prepare renders apps and, when the result differs from what is
// installed, tests and installs it for load; nil means nothing changed.
func (m *Manager) prepare(ctx context.Context, apps []App) (*prepared, error) {
	out, certsChanged, err := m.render(ctx, apps)
	if err != nil {
		return nil, err
	}
	data := out.Main
	if !m.managed() {
		data = out.Include
	}
	old, readErr := os.ReadFile(m.conf)
	if readErr == nil && bytes.Equal(old, data) && !certsChanged {
		m.log.Debug("nginx config unchanged", "file", m.conf)
		return nil, nil
	}
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return nil, fmt.Errorf("reading current nginx config: %w", readErr)
	}
	p := &prepared{out: out, old: old, existed: readErr == nil, start: time.Now()}
	if err := m.install(ctx, data); err != nil {
		return nil, err
	}
	p.tested = time.Now()
	return p, nil
}

// undo puts back the config prepare installed, which nginx did not load.
func (m *Manager) undo(p *prepared) error {
	if p == nil {
		return nil
	}
	return m.restore(p.old, p.existed)
}

// load reloads nginx with the config prepare installed and waits until
// nginx serves it; if nginx does not, the previous file is put back.
func (m *Manager) load(ctx context.Context, napps int, p *prepared) error {
	if err := m.pace(ctx); err != nil {
		return errors.Join(err, m.undo(p))
	}
	if err := m.reload(ctx); err != nil {
		return errors.Join(fmt.Errorf("reloading %s: %w", m.unit, err), m.undo(p))
	}
	signalled := time.Now()
	m.reloaded = signalled
	serving, err := m.waitLoaded(ctx, p.out.Generation)
	if err != nil {
		// nginx kept its old config; make the file say so again.
		return errors.Join(err, m.undo(p))
	}
	m.gen = p.out.Generation
	m.reloads.Add(1)
	ms := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
	m.log.Info("nginx reloaded", "unit", m.unit, "apps", napps, "test", ms(p.tested.Sub(p.start)), "parse_cpu", ms(m.parseCPU),
		"signal", ms(signalled.Sub(p.tested)), "serving", ms(serving.Sub(signalled)), "settled", ms(time.Since(serving)))
	m.cleanChains(p.out.Concat)
	m.cleanAuth(p.out.Auth)
	return nil
}

// reload asks nginx to re-read its config. Our own nginx gets SIGHUP
// straight from systemd (no job, no helper process: it is on every
// deploy's path); a system nginx is reloaded the way its unit says.
// Either way waitLoaded then sees whether nginx switched.
func (m *Manager) reload(ctx context.Context) error {
	if m.managed() {
		return m.units.Signal(ctx, m.unit, syscall.SIGHUP)
	}
	return m.units.Reload(ctx, m.unit)
}

// install puts data at m.conf only if nginx accepts the full config.
// Managed: the whole conf is tested from a temp file next to it, then
// renamed. System: nginx.conf includes the file by a glob we don't own, so
// the new file is renamed into place, the system config tested, and the
// old file put back if the test fails; nginx is not reloaded in between.
func (m *Manager) install(ctx context.Context, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(m.conf), 0o755); err != nil {
		return fmt.Errorf("creating nginx config folder: %w", err)
	}
	tmp, err := atomicfile.WriteTemp(m.conf, data, 0o644)
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if m.managed() {
		if err := m.test(ctx, tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, m.conf); err != nil {
			return fmt.Errorf("installing nginx config: %w", err)
		}
		return atomicfile.SyncDir(filepath.Dir(m.conf))
	}
	old, readErr := os.ReadFile(m.conf)
	if readErr != nil && !errors.Is(readErr, os.ErrNotExist) {
		return fmt.Errorf("reading current nginx include: %w", readErr)
	}
	if err := os.Rename(tmp, m.conf); err != nil {
		return fmt.Errorf("installing nginx include: %w", err)
	}
	if err := m.test(ctx, m.systemConf); err != nil {
		return errors.Join(err, m.restore(old, readErr == nil))
	}
	return atomicfile.SyncDir(filepath.Dir(m.conf))
}

// restore puts the previous file back (or removes a file that did not
// exist before).
func (m *Manager) restore(old []byte, existed bool) error {
	if !existed {
		if err := os.Remove(m.conf); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing the refused nginx config: %w", err)
		}
		return nil
	}
	if err := atomicfile.Write(m.conf, old, 0o644); err != nil {
		return fmt.Errorf("restoring the previous nginx config: %w", err)
	}
	return nil
}

// test runs `nginx -t` on conf (managed: with our prefix; system: conf
// may be empty for nginx's default).
func (m *Manager) test(ctx context.Context, conf string) error {
	args := []string{"-t", "-q"}
	if m.managed() {
		args = append(args, "-p", m.paths.Prefix)
	}
	if conf != "" {
		args = append(args, "-c", conf)
	}
	cmd := exec.CommandContext(ctx, m.g.Nginx.Binary, args...)
	out, err := cmd.CombinedOutput()
	if ps := cmd.ProcessState; ps != nil {
		m.parseCPU = ps.UserTime() + ps.SystemTime()
	}
	if err != nil {
		msg := strings.TrimSpace(string(out))
		if msg == "" {
			msg = err.Error()
		}
		return fmt.Errorf("testing nginx config: %s: %w", msg, ErrConfigTest)
	}
	return nil
}

// cleanChains removes chain bundles the installed config no longer uses.
func (m *Manager) cleanChains(used map[string][]string) {
	dir := filepath.Join(m.paths.Prefix, "tls")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if _, ok := used[p]; !ok && strings.HasPrefix(e.Name(), "chain-") {
			if err := os.Remove(p); err != nil {
				m.log.Warn("removing an unused certificate chain", "file", p, "err", err)
			}
		}
	}
}
