package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/keter-systemd/keter/bundle"
)

// ErrNoEntry means postgres.yaml has no database for the app.
var ErrNoEntry = errors.New("no database recorded for this app")

// connectTimeout bounds one admin connection attempt when the DSN sets
// no connect_timeout, so a blackholed server fails a deploy instead of
// hanging it.
const connectTimeout = 15 * time.Second

// Plugin hands out per-app databases. Its methods are safe for concurrent
// use; they serialise on the credentials file.
type Plugin struct {
	dsn      string
	admin    *pgx.ConnConfig // nil when dsn did not parse
	adminErr error
	store    store
	log      *slog.Logger
	mu       sync.Mutex
}

// New returns the plugin for keter's admin DSN (keter-config `postgres:
// {dsn: ...}`) and etc folder (ROOT/etc). A DSN that does not parse is
// reported by every Ensure and Drop.
func New(adminDSN string, etcDir string, log *slog.Logger) *Plugin {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Plugin{dsn: adminDSN, store: store{dir: etcDir}, log: log}
	p.admin, p.adminErr = parseDSN(adminDSN)
	if p.adminErr != nil {
		p.adminErr = fmt.Errorf("postgres plugin: parsing the admin dsn: %w", p.adminErr)
	}
	return p
}

func parseDSN(dsn string) (*pgx.ConnConfig, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, err
	}
	if cfg.Database == "" {
		// The server would default to a database named like the role.
		cfg.Database = "postgres"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	return cfg, nil
}

// DefaultServer is where apps that name no server connect: the admin
// DSN's host and port, or 127.0.0.1 when that host is a unix socket
// (apps run as DynamicUser, so peer authentication over the socket
// cannot work for them; password over TCP does).
func (p *Plugin) DefaultServer() (string, int) {
	if p.admin == nil {
		return "127.0.0.1", defaultPort
	}
	host := p.admin.Host
	if host == "" || strings.HasPrefix(host, "/") {
		host = "127.0.0.1"
	}
	return host, int(p.admin.Port)
}

// isAdminServer reports whether server:port is the one the admin DSN
// reaches as it is (then that DSN is used unchanged, e.g. over the socket).
func (p *Plugin) isAdminServer(server string, port int) bool {
	if port != int(p.admin.Port) {
		return false
	}
	if server == p.admin.Host {
		return true
	}
	ds, _ := p.DefaultServer()
	if server == ds {
		return true
	}
	local := func(h string) bool { return h == "localhost" || h == "127.0.0.1" || h == "::1" }
	return local(server) && (strings.HasPrefix(p.admin.Host, "/") || local(p.admin.Host))
}

// adminConfig is the admin connection for server:port: the admin DSN
// itself, or its credentials and options pointed at another server.
func (p *Plugin) adminConfig(server string, port int) (*pgx.ConnConfig, error) {
	if p.isAdminServer(server, port) {
		return p.admin.Copy(), nil
	}
	// Re-parse rather than patch Host, so TLS settings follow the new host.
	cfg, err := parseDSN(withServer(p.dsn, server, port))
	if err != nil {
		return nil, fmt.Errorf("parsing the admin dsn for %s: %w", serverAddr(server, port), err)
	}
	return cfg, nil
}

// withServer returns dsn with its host and port replaced.
func withServer(dsn, host string, port int) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		if u, err := url.Parse(dsn); err == nil {
			u.Host = net.JoinHostPort(host, strconv.Itoa(port))
			q := u.Query()
			q.Del("host")
			q.Del("port")
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	// In keyword/value form a later key wins.
	return dsn + " host=" + dsnQuote(host) + " port=" + strconv.Itoa(port)
}

func dsnQuote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

func serverAddr(host string, port int) string {
	if strings.HasPrefix(host, "/") {
		return filepath.Join(host, ".s.PGSQL."+strconv.Itoa(port))
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// ConnectError is a failed admin connection: Server is host:port (or the
// socket path) and Err the cause.
type ConnectError struct {
	Server string
	Err    error
}

func (e *ConnectError) Error() string { return "connecting to " + e.Server + ": " + reason(e.Err) }
func (e *ConnectError) Unwrap() error { return e.Err }

// reason is the short cause of a connection failure, without pgconn's
// repetition of the user, database and address.
func reason(err error) string {
	var pgErr *pgconn.PgError
	var sysErr *os.SyscallError
	var dnsErr *net.DNSError
	switch {
	case errors.As(err, &pgErr):
		return pgErr.Message + " (SQLSTATE " + pgErr.Code + ")"
	case errors.As(err, &sysErr):
		return sysErr.Err.Error()
	case errors.As(err, &dnsErr):
		return dnsErr.Error()
	case errors.Is(err, context.DeadlineExceeded):
		return "timed out"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var ce *pgconn.ConnectError
	if errors.As(err, &ce) && ce.Unwrap() != nil {
		return ce.Unwrap().Error()
	}
	return err.Error()
}

func (p *Plugin) connect(ctx context.Context, server string, port int) (*pgx.Conn, error) {
	cfg, err := p.adminConfig(server, port)
	if err != nil {
		return nil, err
	}
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, &ConnectError{Server: serverAddr(cfg.Host, int(cfg.Port)), Err: err}
	}
	return conn, nil
}

// Ensure returns the environment for app's units, creating its role and
// database on first use. An entry already in postgres.yaml wins over
// want (nil means the default server). The entry is written before
// anything is created, and every call creates whatever of it is missing,
// so a crash at any point converges on the next call.
func (p *Plugin) Ensure(ctx context.Context, app string, want *bundle.Postgres) (map[string]string, error) {
	env, err := p.ensure(ctx, app, want)
	if err != nil {
		return nil, fmt.Errorf("postgres plugin: %w", err)
	}
	return env, nil
}

func (p *Plugin) ensure(ctx context.Context, app string, want *bundle.Postgres) (map[string]string, error) {
	if p.adminErr != nil {
		return nil, p.adminErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	unlock, err := p.store.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	entries, err := p.store.load()
	if err != nil {
		return nil, err
	}

	e, ok := entries[app]
	if ok {
		if server, port := p.serverFor(want); want != nil && want.Server != "" && (server != e.Server || port != e.Port) {
			p.log.Warn("bundle asks for another postgres server; keeping the recorded database",
				"app", app, "recorded", serverAddr(e.Server, e.Port), "asked", serverAddr(server, port))
		}
	} else {
		e.Server, e.Port = p.serverFor(want)
	}
	conn, err := p.connect(ctx, e.Server, e.Port)
	if err != nil {
		return nil, err
	}
	defer conn.Close(context.WithoutCancel(ctx))

	if !ok {
		e.Pass = newPassword()
		if e.Name, e.User, err = freshNames(ctx, conn, app, entries); err != nil {
			return nil, fmt.Errorf("choosing names on %s: %w", serverAddr(e.Server, e.Port), err)
		}
		entries[app] = e
		if err := p.store.save(entries); err != nil {
			return nil, err
		}
		p.log.Info("recorded postgres database", "app", app, "database", e.Name, "role", e.User,
			"server", serverAddr(e.Server, e.Port))
	}
	if err := p.converge(ctx, conn, app, e); err != nil {
		return nil, err
	}
	return e.Env(), nil
}

// serverFor is the server a bundle asks for, with keter's defaults.
func (p *Plugin) serverFor(want *bundle.Postgres) (string, int) {
	server, port := p.DefaultServer()
	if want != nil && want.Server != "" {
		server, port = want.Server, defaultPort
	}
	if want != nil && want.Port != 0 {
		port = want.Port
	}
	return server, port
}

// freshNames picks a database and role name for app that exist neither
// on the server nor in the file.
func freshNames(ctx context.Context, conn *pgx.Conn, app string, entries map[string]Entry) (db, role string, err error) {
	base := baseName(app)
	used := map[string]bool{}
	for _, e := range entries {
		used[e.Name], used[e.User] = true, true
	}
	for range 10 {
		db, role = newName(base), newName(base)
		if db == role || used[db] || used[role] {
			continue
		}
		taken, err := exists(ctx, conn, "SELECT EXISTS(SELECT 1 FROM pg_roles WHERE rolname = $1) OR EXISTS(SELECT 1 FROM pg_database WHERE datname = $2)", role, db)
		if err != nil {
			return "", "", fmt.Errorf("querying the catalog: %w", err)
		}
		if !taken {
			return db, role, nil
		}
	}
	return "", "", errors.New("no free random name after 10 tries")
}

func exists(ctx context.Context, conn *pgx.Conn, query string, args ...any) (bool, error) {
	var ok bool
	if err := conn.QueryRow(ctx, query, args...).Scan(&ok); err != nil {
		return false, err
	}
	return ok, nil
}

func ident(name string) string { return pgx.Identifier{catalogName(name)}.Sanitize() }

// converge creates whatever of e's role and database is missing. A role
// that exists is left alone: keter created it from this entry (names are
// checked free before the entry is written), so its password matches.
func (p *Plugin) converge(ctx context.Context, conn *pgx.Conn, app string, e Entry) error {
	role, db := catalogName(e.User), catalogName(e.Name)
	on := serverAddr(e.Server, e.Port)
	roleOK, err := exists(ctx, conn, "SELECT EXISTS(SELECT 1 FROM pg_roles WHERE rolname = $1)", role)
	if err != nil {
		return fmt.Errorf("looking up role %q on %s: %w", role, on, err)
	}
	if !roleOK {
		pw, err := passwordSQL(e.Pass)
		if err == nil {
			_, err = conn.Exec(ctx, "CREATE ROLE "+ident(role)+" LOGIN PASSWORD "+pw)
		}
		if err != nil {
			return fmt.Errorf("creating role %q on %s: %w", role, on, err)
		}
		p.log.Info("created postgres role", "app", app, "role", role, "server", on)
	}
	dbOK, err := exists(ctx, conn, "SELECT EXISTS(SELECT 1 FROM pg_database WHERE datname = $1)", db)
	if err != nil {
		return fmt.Errorf("looking up database %q on %s: %w", db, on, err)
	}
	if !dbOK {
		err := canSetRole(ctx, conn, role)
		if err == nil {
			_, err = conn.Exec(ctx, "CREATE DATABASE "+ident(db)+" OWNER "+ident(role))
		}
		if err != nil {
			return fmt.Errorf("creating database %q on %s: %w", db, on, err)
		}
		p.log.Info("created postgres database", "app", app, "database", db, "role", role, "server", on)
	}
	return nil
}

// canSetRole makes the admin role a member of role. CREATE DATABASE ...
// OWNER and DROP DATABASE need it for a non-superuser: membership up to
// PostgreSQL 15, the SET option from 16 on (where CREATEROLE alone only
// gives ADMIN OPTION on the roles it created, which lets it grant this).
func canSetRole(ctx context.Context, conn *pgx.Conn, role string) error {
	priv := "MEMBER"
	if v, err := strconv.Atoi(conn.PgConn().ParameterStatus("server_version_num")); err == nil && v >= 160000 {
		priv = "SET"
	}
	ok, err := exists(ctx, conn, "SELECT pg_has_role(current_user, $1::name, $2::text)", role, priv)
	if err != nil || ok {
		return err
	}
	if _, err := conn.Exec(ctx, "GRANT "+ident(role)+" TO CURRENT_USER"); err != nil {
		return fmt.Errorf("granting role %q to the admin role: %w", role, err)
	}
	return nil
}

// dropForce drops db, ending its sessions. Before PostgreSQL 16 an
// autovacuum worker in db (a fresh database gets one soon) counts as a
// session no role but a superuser may end, so a non-superuser admin gets
// "insufficient privilege" until the worker is done: try again briefly.
func dropForce(ctx context.Context, conn *pgx.Conn, db string) error {
	var err error
	for wait := 50 * time.Millisecond; ; wait *= 2 {
		_, err = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident(db)+" WITH (FORCE)")
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "42501" || wait > 2*time.Second {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
	}
}

// Env is the environment an app's units get for e: Keter's PG* names,
// libpq's PGPASSWORD and a DATABASE_URL.
func (e Entry) Env() map[string]string {
	port := strconv.Itoa(e.Port)
	u := url.URL{Scheme: "postgres", User: url.UserPassword(e.User, e.Pass), Path: "/" + e.Name}
	if strings.HasPrefix(e.Server, "/") {
		u.RawQuery = url.Values{"host": {e.Server}, "port": {port}}.Encode()
	} else {
		u.Host = net.JoinHostPort(e.Server, port)
	}
	return map[string]string{
		"PGHOST":       e.Server,
		"PGPORT":       port,
		"PGUSER":       e.User,
		"PGDATABASE":   e.Name,
		"PGPASS":       e.Pass,
		"PGPASSWORD":   e.Pass,
		"DATABASE_URL": u.String(),
	}
}

// Drop removes app's database (closing its open sessions), its role and
// its entry. It is only for an operator's explicit command: removing an
// app never drops its data. The database is only dropped if the entry's
// role owns it.
func (p *Plugin) Drop(ctx context.Context, app string) error {
	if err := p.drop(ctx, app); err != nil {
		return fmt.Errorf("postgres plugin: dropping the database of app %q: %w", app, err)
	}
	return nil
}

func (p *Plugin) drop(ctx context.Context, app string) error {
	if p.adminErr != nil {
		return p.adminErr
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	unlock, err := p.store.lock()
	if err != nil {
		return err
	}
	defer unlock()
	entries, err := p.store.load()
	if err != nil {
		return err
	}
	e, ok := entries[app]
	if !ok {
		return ErrNoEntry
	}
	conn, err := p.connect(ctx, e.Server, e.Port)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	role, db := catalogName(e.User), catalogName(e.Name)
	on := serverAddr(e.Server, e.Port)

	var owner string
	err = conn.QueryRow(ctx, "SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = $1", db).Scan(&owner)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return fmt.Errorf("looking up database %q on %s: %w", db, on, err)
	case owner != role:
		return fmt.Errorf("database %q on %s is owned by %q, not by the app's role %q: refusing to drop it", db, on, owner, role)
	default:
		err := canSetRole(ctx, conn, role)
		if err == nil {
			err = dropForce(ctx, conn, db)
		}
		if err != nil {
			return fmt.Errorf("dropping database %q on %s: %w", db, on, err)
		}
		p.log.Info("dropped postgres database", "app", app, "database", db, "server", on)
	}
	if _, err := conn.Exec(ctx, "DROP ROLE IF EXISTS "+ident(role)); err != nil {
		return fmt.Errorf("dropping role %q on %s: %w", role, on, err)
	}
	p.log.Info("dropped postgres role", "app", app, "role", role, "server", on)
	delete(entries, app)
	return p.store.save(entries)
}
