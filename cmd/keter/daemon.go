package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/dbus"
	"github.com/keter-systemd/keter/internal/sockdiag"
	"github.com/keter-systemd/keter/nginx"
	"github.com/keter-systemd/keter/portmap"
	"github.com/keter-systemd/keter/postgres"
	"github.com/keter-systemd/keter/status"
	"github.com/keter-systemd/keter/unitcache"
	"github.com/keter-systemd/keter/unitgen"
	appusage "github.com/keter-systemd/keter/usage"
)

func cmdRun(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	debug := fs.Bool("debug", false, "log bus traffic and other detail")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "Usage: keter run [--debug] CONFIG\n\nRuns the daemon with the keter-config.yaml at CONFIG.")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return 0
	} else if err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	level := slog.LevelInfo
	if *debug {
		level = slog.LevelDebug
	}
	log := newLogger(level)
	if err := daemonMain(ctx, fs.Arg(0), log); err != nil {
		log.Error("keter stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger logs to stderr; under systemd, journald adds the time.
func newLogger(level slog.Level) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if os.Getenv("JOURNAL_STREAM") != "" {
		opts.ReplaceAttr = func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func daemonMain(ctx context.Context, path string, log *slog.Logger) error {
	cfg, warns, err := config.Load(path)
	for _, w := range warns {
		log.Warn(string(w), "config", path)
	}
	if err != nil {
		return err
	}
	log.Info("keter starting", "version", version, "root", cfg.Root, "nginx_mode", cfg.Nginx.Mode)
	defer profileCPU(log)()
	setGC()

	bus, err := dbus.New(ctx)
	if err != nil {
		return fmt.Errorf("connecting to systemd: %w", err)
	}
	defer bus.Close()
	if err := installHooks(cfg); err != nil {
		return err
	}

	var nopts []nginx.Option
	var stopHook func(front, port int, unit string) []string
	// nginx retires its kept connections to an old version within
	// SwitchBound; the margin covers a request that starts just inside it.
	minDrain := nginx.SwitchBound + 300*time.Millisecond
	var retired func([]int)
	if pm, err := portMap(ctx, cfg, log); err != nil {
		return err
	} else if pm != nil {
		nopts = append(nopts, nginx.WithPortMap(pm))
		stopHook = func(front, port int, unit string) []string {
			return portmap.StopHook(cfg.Hooks(), pm.Table(), front, port, unit)
		}
		retired = func(ports []int) {
			for _, p := range ports {
				if _, err := pm.Forget(p); err != nil {
					log.Warn("forgetting an old version's connections", "port", p, "err", err)
				}
			}
		}
	}
	// An unreadable maintenance state stops keter: running without it
	// would serve apps an operator put in maintenance. nginx and the port
	// map keep serving as they are meanwhile.
	maintPort, err := app.MaintenancePort(cfg)
	if errors.Is(err, app.ErrNoPorts) {
		log.Error("maintenance mode is unavailable", "err", err)
	} else if err != nil {
		return err
	} else {
		log.Info("maintenance responder", "port", maintPort)
		nopts = append(nopts, nginx.WithMaintenance(maintPort))
	}
	certs, err := newACME(cfg, log.With("part", "acme"))
	if err != nil {
		return fmt.Errorf("starting ACME: %w", err)
	}
	if certs != nil {
		nopts = append(nopts, nginx.WithACME(acmeCerts{certs}))
	}
	ngx := nginx.New(cfg, bus, log.With("part", "nginx"), nopts...)
	repairUnits(ctx, bus, ngx.Unit(), log)
	if err := ngx.Start(ctx); err != nil {
		return fmt.Errorf("starting nginx: %w", err)
	}
	pg := postgres.New(cfg.Postgres.DSN, cfg.Etc(), log.With("part", "postgres"))
	gid := deployGroup(cfg, log)
	var st *status.Server
	mgr, err := app.New(app.Options{
		Config:    cfg,
		Units:     bus,
		Proxy:     proxy{ngx},
		Databases: pg,
		Log:       log,
		StopHook:  stopHook,
		MinDrain:  minDrain,
		Serving:   func(ports []int) (int, error) { return sockdiag.Serving(ports...) },
		DeployGID: gid,
		Retired:   retired,
		// The port nginx listens on for maintenance is never an app's.
		MaintenancePort: maintPort,
		OneOffs:         bus,
		OnReady: func() {
			st.SetReady()
			daemon.SdNotify(false, daemon.SdNotifyReady)
			log.Info("keter ready")
		},
		ServingEach: sockdiag.ServingEach,
	})
	if err != nil {
		return err
	}
	units := unitcache.New(bus, unitgen.Prefix, log.With("part", "unitcache"))
	cached := cachedBus{bus, units}
	use := appusage.New(cached, unitgen.Prefix, log.With("part", "usage"))
	units.BeforeRead = func(ctx context.Context) {
		if list, ok := units.Cached(unitgen.Prefix); ok {
			use.Observe(ctx, list, time.Now())
		}
	}
	// The operators' group reads the apps' log lines on the page as on the socket.
	var operators string
	if gid > 0 {
		operators = cfg.DeployGroup
	}
	// The socket listens before READY, so the CLI works once start returns.
	st = status.New(status.Options{
		Core: mgr, Units: cached, Usage: use, Reloads: ngx.Reloads, MapSwitches: ngx.Switches, DropDatabase: pg.Drop,
		Listen: cfg.Status.Listen, Socket: cfg.Status.Socket, SocketGID: gid,
		DeployGroup: operators, RemoteLogs: cfg.Status.RemoteLogs,
		Root: cfg.Root, Incoming: cfg.Incoming(), Version: version, Log: log.With("part", "status"),
		Certs: statusCerts(certs), CertStorage: statusCertStorage(certs), Operator: mgr, Canary: mgr,
	})
	if err := st.Listen(); err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(ctx)
	var served sync.WaitGroup
	defer func() { cancel(); served.Wait() }()
	served.Add(1)
	go func() { defer served.Done(); st.Serve(ctx) }()
	if err := serveExec(ctx, cfg, gid, mgr, log.With("part", "exec"), &served); err != nil {
		return err
	}
	served.Add(2)
	go func() {
		defer served.Done()
		if err := units.Run(ctx); err != nil {
			log.Error("unit cache", "err", err)
		}
	}()
	go func() { defer served.Done(); use.Run(ctx) }()
	go watchdog(ctx)
	go trimMemory(ctx)
	go ngx.Watch(ctx)
	countCanaryRequests(ctx, ngx, mgr, log.With("part", "canary"), &served)
	if certs != nil {
		served.Add(2)
		go func() { defer served.Done(); certs.Run(ctx) }()
		go func() { defer served.Done(); refreshOnCertificates(ctx, certs, ngx, log.With("part", "acme")) }()
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				daemon.SdNotify(false, daemon.SdNotifyReloading)
				mgr.Rescan()
				daemon.SdNotify(false, daemon.SdNotifyReady)
			}
		}
	}()
	err = mgr.Run(ctx)
	daemon.SdNotify(false, daemon.SdNotifyStopping)
	log.Info("keter stopping; app units keep running")
	return err
}

// watchdog pings systemd at half the WatchdogSec interval.
func watchdog(ctx context.Context) {
	every, err := daemon.SdWatchdogEnabled(false)
	if err != nil || every == 0 {
		return
	}
	t := time.NewTicker(every / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			daemon.SdNotify(false, daemon.SdNotifyWatchdog)
		}
	}
}

// portMap sets up the nftables map new versions are switched by, or
// returns nil when versions are to be switched by reloading nginx.
func portMap(ctx context.Context, cfg *config.Config, log *slog.Logger) (*portmap.Map, error) {
	if cfg.Nginx.Switch == config.SwitchReload {
		log.Info("switching versions by reloading nginx", "nginx.switch", cfg.Nginx.Switch)
		return nil, nil
	}
	pm := portmap.New(cfg.Nginx.NftTable)
	err := nginx.MapSupport(ctx, cfg.Nginx.Binary)
	if err == nil {
		err = pm.Setup(ctx)
	}
	if err != nil {
		if cfg.Nginx.Switch == config.SwitchMap {
			return nil, fmt.Errorf("nginx.switch is map: %w", err)
		}
		log.Warn("no port map, so each new version reloads nginx (install nftables and nginx 1.19.10 or newer, or set nginx.switch: reload to silence this)", "err", err)
		return nil, nil
	}
	log.Info("switching versions by an nftables port map", "table", "ip "+pm.Table())
	return pm, nil
}

// deployGroup is the gid of the operators' group, 0 when there is none.
func deployGroup(cfg *config.Config, log *slog.Logger) int {
	g, err := user.LookupGroup(cfg.DeployGroup)
	if err != nil {
		if cfg.DeployGroup != config.DefaultDeployGroup {
			log.Warn("deploy-group not found: only root may deploy", "deploy-group", cfg.DeployGroup, "err", err)
		}
		return 0
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil || gid == 0 {
		log.Warn("deploy-group is root's group: only root may deploy", "deploy-group", cfg.DeployGroup)
		return 0
	}
	log.Info("operators' group may deploy", "deploy-group", cfg.DeployGroup)
	return gid
}

// proxy adapts the nginx manager to the core's Proxy interface.
type proxy struct{ m *nginx.Manager }

func (p proxy) Apply(ctx context.Context, live []app.Live) error {
	apps := make([]nginx.App, len(live))
	for i, l := range live {
		apps[i] = nginx.App{Name: l.Name, Dir: l.Dir, Config: l.Config, Ports: l.Ports, Fronts: l.Fronts, Down: l.Down, Resting: l.Resting,
			CanaryFronts: l.CanaryFronts, Canary: nginxCanary(l.Canary)}
		if l.Maintenance != nil {
			apps[i].Maintenance = &nginx.Maintenance{Message: l.Maintenance.Message}
		}
	}
	return p.m.Apply(ctx, apps)
}
