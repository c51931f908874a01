package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keter-systemd/keter/internal/testkit"
)

// needPostgres requires the local cluster and the admin role keter's
// default DSN uses (root over the socket, CREATEDB CREATEROLE).
func needPostgres(t *testing.T) {
	t.Helper()
	testkit.NeedBinary(t, "pg_ctlcluster", "apt-get install postgresql; scripts/services.sh starts it")
	if _, err := os.Stat("/run/postgresql/.s.PGSQL.5432"); err != nil {
		testkit.Missing(t, "PostgreSQL is not running (bash scripts/services.sh starts it)")
	}
	out, err := exec.Command("su", "postgres", "-c", `psql -tAc "SELECT 1 FROM pg_roles WHERE rolname='root'"`).CombinedOutput()
	if err != nil {
		t.Fatalf("asking PostgreSQL for roles: %v: %s", err, out)
	}
	if strings.TrimSpace(string(out)) != "1" {
		run(t, "su", "postgres", "-c", "createuser --createdb --createrole root")
	}
}

func postgresBundle(t *testing.T, path, host, plugin, msg string) {
	t.Helper()
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	y := fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    host: %s\n    args: [--message, %s]\n%s", host, msg, plugin)
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(y)},
		"bin/demoapp":       {Body: demo, Mode: 0o755},
	})
}

// TestPostgresPlugin: the app gets its own database and can log in with
// exactly the variables it was given; a redeploy keeps the database; the
// password is not readable through systemd by an unprivileged user.
func TestPostgresPlugin(t *testing.T) {
	needPostgres(t)
	k := startKeter(t, "")
	host := "pg-" + testkit.Token() + ".test"
	app := "pg" + testkit.Token()
	src := filepath.Join(k.Root, "pg.src")
	postgresBundle(t, src, host, "plugins:\n  postgres: true\n", "v1")
	k.Drop(src, app+".keter")
	k.WaitBody(host, "v1", 60*time.Second)

	env := map[string]string{}
	for _, v := range []string{"PGHOST", "PGPORT", "PGUSER", "PGDATABASE", "PGPASSWORD", "PGPASS", "DATABASE_URL"} {
		code, body, err := k.Get(host, "/env/"+v)
		if err != nil || code != 200 || body == "" {
			t.Fatalf("app has no %s: %d %q %v", v, code, body, err)
		}
		env[v] = body
	}
	if env["PGPASS"] != env["PGPASSWORD"] {
		t.Fatal("PGPASS and PGPASSWORD differ")
	}
	port, _ := strconv.Atoi(env["PGPORT"])
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database = env["PGHOST"], uint16(port), env["PGUSER"], env["PGPASSWORD"], env["PGDATABASE"]
	ctx := context.Background()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("logging in with the app's variables: %v", err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE keep (v text); INSERT INTO keep VALUES ('data')"); err != nil {
		t.Fatalf("the app's role cannot use its database: %v", err)
	}
	conn.Close(ctx)

	units := activeAppUnits(t)
	show, _ := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "systemctl", "show", units[0]).CombinedOutput()
	if len(show) == 0 || strings.Contains(string(show), env["PGPASSWORD"]) {
		t.Fatalf("password visible to an unprivileged user in systemctl show (or no output: %q)", show[:min(len(show), 200)])
	}

	postgresBundle(t, src, host, "plugins:\n  postgres: true\n", "v2")
	k.Drop(src, app+".keter")
	k.WaitBody(host, "v2", 60*time.Second)
	if _, db, _ := k.Get(host, "/env/PGDATABASE"); db != env["PGDATABASE"] {
		t.Fatalf("redeploy moved the app from database %s to %s", env["PGDATABASE"], db)
	}
	if fi, err := os.Stat(filepath.Join(k.Root, "etc", "postgres.yaml")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
}

// TestPostgresDownKeepsOldVersion: a new version whose database server
// refuses connections fails with the server named; the old one serves on.
func TestPostgresDownKeepsOldVersion(t *testing.T) {
	needPostgres(t)
	k := startKeter(t, "")
	host := "pgdown-" + testkit.Token() + ".test"
	src := filepath.Join(k.Root, "pgdown.src")
	postgresBundle(t, src, host, "", "old")
	k.Drop(src, "pgdown.keter")
	k.WaitBody(host, "old", 60*time.Second)

	closed := testkit.FreePort(t)
	l := startLoad(k, host, 2, func(b string) bool { return b == "old" })
	postgresBundle(t, src, host, fmt.Sprintf("plugins:\n  postgres:\n    - server: 127.0.0.1\n      port: %d\n", closed), "new")
	k.Drop(src, "pgdown.keter")
	want := fmt.Sprintf("127.0.0.1:%d", closed)
	eventually(t, 60*time.Second, func() error {
		for _, line := range strings.Split(k.Log(), "\n") {
			if strings.Contains(line, "deploy failed") && strings.Contains(line, want) && strings.Contains(line, "postgres") {
				if strings.Count(line, "postgres plugin") != 1 {
					return fmt.Errorf("the error names the plugin more than once: %s", line)
				}
				return nil
			}
		}
		return fmt.Errorf("no deploy failure naming %s", want)
	})
	l.mustAllSucceed(t, "while the database was down")
}
