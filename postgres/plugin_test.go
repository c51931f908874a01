package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

// superSQL runs statements as the postgres superuser (peer auth over the
// socket), the way an operator would.
func superSQL(t testing.TB, sql string) string {
	t.Helper()
	cmd := exec.Command("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
		"-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql)
	cmd.Env = noPGEnv()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql %q: %v: %s", sql, err, out)
	}
	return strings.TrimSpace(string(out))
}

// noPGEnv is the environment without libpq's variables, which appConnect
// sets for the app's connection.
func noPGEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// needPostgres skips (or fails under CI) without a running local server.
func needPostgres(t testing.TB) {
	t.Helper()
	testkit.NeedBinary(t, "pg_ctlcluster", "apt-get install postgresql; scripts/deps.sh")
	testkit.NeedBinary(t, "runuser", "apt-get install util-linux")
	if os.Geteuid() != 0 {
		testkit.Missing(t, "PostgreSQL tests run as root (runuser -u postgres)")
	}
	out, err := exec.Command("runuser", "-u", "postgres", "--", "psql", "-X", "-A", "-t", "-c", "SELECT 1").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		testkit.Missing(t, "PostgreSQL is not running (bash scripts/services.sh starts it): %v: %s", err, out)
	}
}

type fixture struct {
	dsn   string // the admin DSN: a CREATEDB CREATEROLE role, not superuser
	admin *pgx.Conn
	etc   string
}

// setup makes a fresh admin role and etc folder. Cleanup drops whatever
// the test left in postgres.yaml, then the admin role.
func setup(t *testing.T) *fixture {
	t.Helper()
	needPostgres(t)
	role := "keter_admin_" + testkit.Token()
	pass := newPassword()
	superSQL(t, "CREATE ROLE "+ident(role)+" LOGIN CREATEDB CREATEROLE PASSWORD "+quoteLiteral(pass))
	f := &fixture{
		dsn: "host=127.0.0.1 port=5432 user=" + role + " password=" + pass,
		etc: filepath.Join(testkit.Root(t), "etc"),
	}
	t.Cleanup(func() { superSQL(t, "DROP ROLE IF EXISTS "+ident(role)) })
	t.Cleanup(func() {
		m, err := store{dir: f.etc}.load()
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		for _, e := range m {
			if e.Name != "postgres" {
				superSQL(t, "DROP DATABASE IF EXISTS "+ident(e.Name)+" WITH (FORCE)")
			}
			superSQL(t, "DROP ROLE IF EXISTS "+ident(e.User))
		}
	})
	cfg, err := parseDSN(f.dsn) // as the plugin connects: no dbname means postgres
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	f.admin = conn
	var super bool
	if err := conn.QueryRow(t.Context(), "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil || super {
		t.Fatalf("admin role must not be superuser: super=%v err=%v", super, err)
	}
	return f
}

func (f *fixture) plugin(t *testing.T) *Plugin {
	return New(f.dsn, f.etc, slog.New(slog.NewTextHandler(t.Output(), nil)))
}

func (f *fixture) count(t *testing.T, query string, args ...any) int {
	t.Helper()
	var n int
	if err := f.admin.QueryRow(t.Context(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// objects counts roles and databases whose names start with base_.
func (f *fixture) objects(t *testing.T, base string) (roles, dbs int) {
	t.Helper()
	like := strings.ReplaceAll(base, "_", `\_`) + `\_%`
	return f.count(t, "SELECT count(*) FROM pg_roles WHERE rolname LIKE $1", like),
		f.count(t, "SELECT count(*) FROM pg_database WHERE datname LIKE $1", like)
}

// appConnect connects the way an app's unit would: libpq variables only,
// exactly as given.
func appConnect(t *testing.T, env map[string]string) *pgx.Conn {
	t.Helper()
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "PG") {
			t.Setenv(k, "")
			os.Unsetenv(k)
		}
	}
	for _, k := range []string{"PGHOST", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE"} {
		t.Setenv(k, env[k])
	}
	conn, err := pgx.Connect(t.Context(), "")
	if err != nil {
		t.Fatalf("connecting with the app's env: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func loadEntry(t *testing.T, etc, app string) (Entry, bool) {
	t.Helper()
	m, err := store{dir: etc}.load()
	if err != nil {
		t.Fatal(err)
	}
	e, ok := m[app]
	return e, ok
}

func TestEnsureCreatesAndKeeps(t *testing.T) {
	f := setup(t)
	app := "shop-" + testkit.Token()
	base := baseName(app)

	env, err := f.plugin(t).Ensure(t.Context(), app, &bundle.Postgres{})
	if err != nil {
		t.Fatal(err)
	}
	if env["PGHOST"] != "127.0.0.1" || env["PGPORT"] != "5432" || env["PGPASS"] != env["PGPASSWORD"] || len(env["PGPASSWORD"]) != passwordLen {
		t.Errorf("env %v", env)
	}
	checkName(t, app, env["PGUSER"])
	checkName(t, app, env["PGDATABASE"])
	if !strings.HasPrefix(env["PGDATABASE"], base+"_") {
		t.Errorf("database %q does not derive from app %q", env["PGDATABASE"], app)
	}
	if n := f.count(t, "SELECT count(*) FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba WHERE d.datname = $1 AND r.rolname = $2 AND r.rolcanlogin AND NOT r.rolsuper AND NOT r.rolcreatedb AND NOT r.rolcreaterole",
		env["PGDATABASE"], env["PGUSER"]); n != 1 {
		t.Fatalf("no database %s owned by a plain login role %s", env["PGDATABASE"], env["PGUSER"])
	}

	conn := appConnect(t, env)
	if _, err := conn.Exec(t.Context(), "CREATE TABLE orders (id int); INSERT INTO orders VALUES (42)"); err != nil {
		t.Fatalf("app cannot create a table: %v", err)
	}
	url, err := pgx.Connect(t.Context(), env["DATABASE_URL"])
	if err != nil {
		t.Fatalf("DATABASE_URL: %v", err)
	}
	url.Close(t.Context())

	// The password never went to the server in clear: it stored our verifier.
	verifier := superSQL(t, "SELECT rolpassword FROM pg_authid WHERE rolname = "+quoteLiteral(env["PGUSER"]))
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$4096:") {
		t.Errorf("stored password %q is not a SCRAM verifier", verifier)
	}

	fi, err := os.Stat(filepath.Join(f.etc, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %o, want 0600", FileName, fi.Mode().Perm())
	}
	if e, ok := loadEntry(t, f.etc, app); !ok || e.Name != env["PGDATABASE"] || e.User != env["PGUSER"] || e.Pass != env["PGPASS"] || e.Server != "127.0.0.1" || e.Port != 5432 {
		t.Errorf("entry %+v does not match env %v", e, env)
	}

	for _, step := range []struct {
		name string
		p    *Plugin
	}{
		{"redeploy", nil},
		{"keter restart", f.plugin(t)},
		{"redeploy asking another server", nil},
	} {
		p := step.p
		if p == nil {
			p = f.plugin(t)
		}
		want := &bundle.Postgres{}
		if strings.HasSuffix(step.name, "another server") {
			want = &bundle.Postgres{Server: "db.invalid", Port: 1}
		}
		again, err := p.Ensure(t.Context(), app, want)
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for k, v := range env {
			if again[k] != v {
				t.Errorf("%s: %s = %q, was %q", step.name, k, again[k], v)
			}
		}
		if roles, dbs := f.objects(t, base); roles != 1 || dbs != 1 {
			t.Errorf("%s: %d roles and %d databases for %s, want 1 and 1", step.name, roles, dbs, app)
		}
	}
	var id int
	if err := appConnect(t, env).QueryRow(t.Context(), "SELECT id FROM orders").Scan(&id); err != nil || id != 42 {
		t.Errorf("data did not survive: id=%d err=%v", id, err)
	}
}

func TestEnsureHostileAppNames(t *testing.T) {
	f := setup(t)
	for _, app := range []string{
		`x"; DROP DATABASE postgres; --` + testkit.Token(),
		`a'b` + testkit.Token(),
		`'); DROP ROLE ` + "keter_admin" + `; --` + testkit.Token(),
	} {
		t.Run(app, func(t *testing.T) {
			env, err := f.plugin(t).Ensure(t.Context(), app, nil)
			if err != nil {
				t.Fatal(err)
			}
			checkName(t, app, env["PGUSER"])
			checkName(t, app, env["PGDATABASE"])
			var db string
			if err := appConnect(t, env).QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil || db != env["PGDATABASE"] {
				t.Errorf("app connected to %q (%v), want %q", db, err, env["PGDATABASE"])
			}
		})
	}
	if n := f.count(t, "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"); n != 1 {
		t.Fatal("database postgres is gone")
	}
}

// Entries written by the Haskell Keter (or by hand) are used as they are,
// including names that need quoting and passwords that need escaping.
func TestEnsureKeterWrittenEntries(t *testing.T) {
	f := setup(t)
	tok := testkit.Token()
	hostile := Entry{
		Name: `we"ird'; DROP DATABASE postgres; --` + tok, User: `R"o'le ` + tok,
		Pass: `p'a\ss";--é` + tok, Server: "localhost", Port: 5432,
	}
	plain := Entry{Name: "legacy" + tok + "db", User: "legacy" + tok + "user", Pass: "hvnmqrtsaw"}
	other := Entry{Name: "elsewhere", User: "someone", Pass: "x", Server: "db.example.com", Port: 6543}
	yml := fmt.Sprintf("hostile:\n  name: %s\n  pass: %s\n  port: 5432\n  server: localhost\n  user: %s\n"+
		"legacy:\n  name: %s\n  pass: %s\n  user: %s\n"+
		"other:\n  name: elsewhere\n  pass: x\n  port: 6543\n  server: db.example.com\n  user: someone\n",
		yamlQuote(hostile.Name), yamlQuote(hostile.Pass), yamlQuote(hostile.User), plain.Name, plain.Pass, plain.User)
	if err := os.MkdirAll(f.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.etc, FileName), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	for app, e := range map[string]Entry{"hostile": hostile, "legacy": plain} {
		t.Run(app, func(t *testing.T) {
			env, err := f.plugin(t).Ensure(t.Context(), app, nil)
			if err != nil {
				t.Fatal(err)
			}
			host := "localhost"
			if env["PGDATABASE"] != e.Name || env["PGUSER"] != e.User || env["PGPASSWORD"] != e.Pass || env["PGHOST"] != host || env["PGPORT"] != "5432" {
				t.Fatalf("env %v does not follow the entry %+v", env, e)
			}
			var user string
			if err := appConnect(t, env).QueryRow(t.Context(), "SELECT current_user").Scan(&user); err != nil || user != e.User {
				t.Errorf("logged in as %q (%v), want %q", user, err, e.User)
			}
		})
	}
	if n := f.count(t, "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"); n != 1 {
		t.Fatal("database postgres is gone")
	}
	if e, ok := loadEntry(t, f.etc, "other"); !ok || e != other {
		t.Errorf("an unrelated entry changed: %+v", e)
	}
}

func yamlQuote(s string) string { return strconv.Quote(s) }

// A crash after the entry was written converges on the next Ensure,
// whatever had been created by then.
func TestEnsureConvergesAfterCrash(t *testing.T) {
	f := setup(t)
	tests := []struct {
		name               string
		createRole, create bool
	}{
		{"crash before anything was created", false, false},
		{"crash between CREATE ROLE and CREATE DATABASE", true, false},
		{"crash after both", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			app := "crash-" + testkit.Token()
			base := baseName(app)
			e := Entry{Name: newName(base), User: newName(base), Pass: newPassword(), Server: "127.0.0.1", Port: 5432}
			s := store{dir: f.etc}
			unlock, err := s.lock()
			if err != nil {
				t.Fatal(err)
			}
			m, err := s.load()
			if err == nil {
				m[app] = e
				err = s.save(m)
			}
			unlock()
			if err != nil {
				t.Fatal(err)
			}
			// What keter itself would have done before crashing, as the admin role.
			if tt.createRole {
				pw, _ := passwordSQL(e.Pass)
				if _, err := f.admin.Exec(t.Context(), "CREATE ROLE "+ident(e.User)+" LOGIN PASSWORD "+pw); err != nil {
					t.Fatal(err)
				}
			}
			if tt.create {
				if _, err := f.admin.Exec(t.Context(), "GRANT "+ident(e.User)+" TO CURRENT_USER"); err != nil {
					t.Fatal(err)
				}
				if _, err := f.admin.Exec(t.Context(), "CREATE DATABASE "+ident(e.Name)+" OWNER "+ident(e.User)); err != nil {
					t.Fatal(err)
				}
			}
			env, err := f.plugin(t).Ensure(t.Context(), app, nil)
			if err != nil {
				t.Fatal(err)
			}
			if env["PGDATABASE"] != e.Name || env["PGUSER"] != e.User || env["PGPASSWORD"] != e.Pass {
				t.Fatalf("env %v does not follow the recorded entry %+v", env, e)
			}
			if roles, dbs := f.objects(t, base); roles != 1 || dbs != 1 {
				t.Errorf("%d roles and %d databases, want 1 and 1", roles, dbs)
			}
			if _, err := appConnect(t, env).Exec(t.Context(), "CREATE TABLE t (x int)"); err != nil {
				t.Errorf("app cannot use its database: %v", err)
			}
		})
	}
}

func TestEnsureUnreachable(t *testing.T) {
	closed := testkit.FreePort(t)
	tests := []struct {
		name     string
		dsn      string
		existing string // postgres.yaml content
		want     *bundle.Postgres
		server   string
	}{
		{"admin dsn at a closed port", "host=127.0.0.1 port=" + strconv.Itoa(closed) + " user=keter password=x", "", nil,
			"127.0.0.1:" + strconv.Itoa(closed)},
		{"bundle names a closed server", "host=127.0.0.1 user=keter password=x", "", &bundle.Postgres{Server: "127.0.0.1", Port: closed},
			"127.0.0.1:" + strconv.Itoa(closed)},
		{"recorded entry names a closed server", "host=127.0.0.1 user=keter password=x",
			"app:\n  name: d\n  user: u\n  pass: p\n  server: 127.0.0.1\n  port: " + strconv.Itoa(closed) + "\n", nil,
			"127.0.0.1:" + strconv.Itoa(closed)},
		{"socket that does not exist", "host=" + t.TempDir() + " user=keter", "", nil, ".s.PGSQL.5432"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			etc := t.TempDir()
			if tt.existing != "" {
				if err := os.WriteFile(filepath.Join(etc, FileName), []byte(tt.existing), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p := New(tt.dsn, etc, slog.New(slog.NewTextHandler(t.Output(), nil)))
			_, err := p.Ensure(t.Context(), "app", tt.want)
			var ce *ConnectError
			if !errors.As(err, &ce) {
				t.Fatalf("err = %v, want a ConnectError", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "postgres plugin: connecting to ") || !strings.Contains(msg, tt.server) {
				t.Errorf("error %q does not name the server %s", msg, tt.server)
			}
			if !strings.Contains(msg, "connection refused") && !strings.Contains(msg, "no such file or directory") {
				t.Errorf("error %q does not give the reason", msg)
			}
			t.Log(msg)
			b, _ := os.ReadFile(filepath.Join(etc, FileName))
			if string(b) != tt.existing {
				t.Errorf("postgres.yaml changed to %q", b)
			}
		})
	}
}

func TestEnsureRefused(t *testing.T) {
	needPostgres(t)
	p := New("host=127.0.0.1 port=5432 user=keter_nobody_"+testkit.Token()+" password=wrong", t.TempDir(), nil)
	_, err := p.Ensure(t.Context(), "app", nil)
	if err == nil || !strings.Contains(err.Error(), "connecting to 127.0.0.1:5432: password authentication failed") {
		t.Fatalf("err = %v, want the server and the reason", err)
	}
}

func TestDrop(t *testing.T) {
	f := setup(t)
	app := "gone-" + testkit.Token()
	p := f.plugin(t)
	env, err := p.Ensure(t.Context(), app, nil)
	if err != nil {
		t.Fatal(err)
	}
	appConnect(t, env) // an open session must not block the drop
	if err := p.Drop(t.Context(), app); err != nil {
		t.Fatal(err)
	}
	if roles, dbs := f.objects(t, baseName(app)); roles != 0 || dbs != 0 {
		t.Errorf("%d roles and %d databases left", roles, dbs)
	}
	if _, ok := loadEntry(t, f.etc, app); ok {
		t.Error("entry left in postgres.yaml")
	}
	if err := p.Drop(t.Context(), app); !errors.Is(err, ErrNoEntry) {
		t.Errorf("second drop: %v, want ErrNoEntry", err)
	}
	// Another Ensure starts afresh.
	env2, err := p.Ensure(t.Context(), app, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env2["PGDATABASE"] == env["PGDATABASE"] {
		t.Error("a dropped database name was reused")
	}
}

func TestDropRefusesForeignDatabase(t *testing.T) {
	f := setup(t)
	if err := os.MkdirAll(f.etc, 0o755); err != nil {
		t.Fatal(err)
	}
	role := "victim_" + testkit.Token()
	yml := "evil:\n  name: postgres\n  user: " + role + "\n  pass: p\n  server: 127.0.0.1\n  port: 5432\n"
	if err := os.WriteFile(filepath.Join(f.etc, FileName), []byte(yml), 0o600); err != nil {
		t.Fatal(err)
	}
	err := f.plugin(t).Drop(t.Context(), "evil")
	if err == nil || !strings.Contains(err.Error(), "refusing to drop") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if n := f.count(t, "SELECT count(*) FROM pg_database WHERE datname = 'postgres'"); n != 1 {
		t.Fatal("database postgres is gone")
	}
	if _, ok := loadEntry(t, f.etc, "evil"); !ok {
		t.Error("entry removed although nothing was dropped")
	}
}

// The production setup: keter as root with the default DSN (peer auth on
// the socket) after the README's createuser command.
func TestDefaultDSN(t *testing.T) {
	needPostgres(t)
	if superSQL(t, "SELECT count(*) FROM pg_roles WHERE rolname = 'root'") == "0" {
		cmd := exec.Command("runuser", "-u", "postgres", "--", "createuser", "--createdb", "--createrole", "root")
		cmd.Env = noPGEnv()
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("createuser: %v: %s", err, out)
		}
	}
	etc := filepath.Join(testkit.Root(t), "etc")
	app := "default-" + testkit.Token()
	p := New("host=/var/run/postgresql", etc, slog.New(slog.NewTextHandler(t.Output(), nil)))
	t.Cleanup(func() {
		if err := p.Drop(context.Background(), app); err != nil && !errors.Is(err, ErrNoEntry) {
			t.Error(err)
		}
	})
	env, err := p.Ensure(t.Context(), app, nil)
	if err != nil {
		t.Fatal(err)
	}
	if env["PGHOST"] != "127.0.0.1" || env["PGPORT"] != "5432" {
		t.Errorf("apps must connect over TCP to 127.0.0.1:5432, got %s:%s", env["PGHOST"], env["PGPORT"])
	}
	if _, err := appConnect(t, env).Exec(t.Context(), "CREATE TABLE t (x int)"); err != nil {
		t.Error(err)
	}
}

// TestDropWaitsOutSessionsItMayNotEnd: a non-superuser admin may not end
// a superuser's session (nor, before PostgreSQL 16, an autovacuum worker,
// which a fresh database soon gets), so DROP ... WITH (FORCE) fails until
// that session is gone. Drop tries again for a while instead of failing
// the whole removal on a session that ends a moment later.
func TestDropWaitsOutSessionsItMayNotEnd(t *testing.T) {
	f := setup(t)
	p := f.plugin(t)
	app := "held-" + testkit.Token()
	env, err := p.Ensure(t.Context(), app, nil)
	if err != nil {
		t.Fatal(err)
	}
	held := exec.Command("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-d", env["PGDATABASE"], "-c", "SELECT pg_sleep(0.5)")
	held.Env = noPGEnv()
	if err := held.Start(); err != nil {
		t.Fatal(err)
	}
	defer held.Wait()
	for i := 0; superSQL(t, "SELECT count(*) FROM pg_stat_activity WHERE datname = "+quoteLiteral(env["PGDATABASE"])) == "0"; i++ {
		if i == 500 {
			t.Fatal("the superuser session never showed up")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := p.Drop(t.Context(), app); err != nil {
		t.Fatalf("Drop while a superuser session briefly held the database: %v", err)
	}
	if n := f.count(t, "SELECT count(*) FROM pg_database WHERE datname = $1", env["PGDATABASE"]); n != 0 {
		t.Fatalf("database %s still exists", env["PGDATABASE"])
	}
}
