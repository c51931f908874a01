package testkit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// PostgresDB is a database and login role made for one test on the machine's
// PostgreSQL, and dropped when it ends. DSN reaches it over TCP with the
// password in a libpq password file (passfile=), as an operator would.
type PostgresDB struct {
	Name, Role, Password string
	DSN                  string
}

// Postgres makes the role and the database it owns. Without a running
// PostgreSQL the test is skipped, or fails under CI=true.
func Postgres(t testing.TB) *PostgresDB {
	t.Helper()
	NeedBinary(t, "runuser", "apt-get install util-linux")
	NeedBinary(t, "psql", "apt-get install postgresql; scripts/deps.sh")
	if os.Geteuid() != 0 {
		Missing(t, "PostgreSQL tests run as root (runuser -u postgres)")
	}
	if out, err := psql("SELECT 1"); err != nil || out != "1" {
		Missing(t, "PostgreSQL is not running (bash scripts/services.sh starts it): %v: %s", err, out)
	}
	tok := Token()
	db := &PostgresDB{Name: "keter_acme_" + tok, Role: "keter_acme_" + tok, Password: "pw-" + Token() + Token() + Token()}
	SuperSQL(t, "CREATE ROLE "+db.Role+" LOGIN PASSWORD '"+db.Password+"'")
	t.Cleanup(func() { SuperSQL(t, "DROP ROLE IF EXISTS "+db.Role) })
	SuperSQL(t, "CREATE DATABASE "+db.Name+" OWNER "+db.Role)
	t.Cleanup(func() { SuperSQL(t, "DROP DATABASE IF EXISTS "+db.Name+" WITH (FORCE)") })
	pass := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pass, []byte("127.0.0.1:5432:"+db.Name+":"+db.Role+":"+db.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	db.DSN = "host=127.0.0.1 port=5432 dbname=" + db.Name + " user=" + db.Role + " passfile=" + pass
	return db
}

// SuperSQL runs sql as the postgres superuser (peer authentication).
func SuperSQL(t testing.TB, sql string) string {
	t.Helper()
	out, err := psql(sql)
	if err != nil {
		t.Fatalf("psql %q: %v: %s", sql, err, out)
	}
	return out
}

func psql(sql string) (string, error) {
	cmd := exec.Command("runuser", "-u", "postgres", "--", "psql", "-X", "-q", "-A", "-t",
		"-v", "ON_ERROR_STOP=1", "-d", "postgres", "-c", sql)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
