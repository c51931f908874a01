package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestCLIPostgresDrop: `keter postgres drop` refuses a deployed app, then
// drops the database of a removed one, and only once.
func TestCLIPostgresDrop(t *testing.T) {
	needPostgres(t)
	k := startKeter(t, "status:\n  listen: \"off\"\n")
	name := "pgdrop" + testkit.Token()
	host := name + ".test"
	src := filepath.Join(k.Root, "build", name+".keter")
	os.MkdirAll(filepath.Dir(src), 0o755)
	postgresBundle(t, src, host, "plugins:\n  postgres: true\n", "v1")
	mustCLI(t, 0, "deploy", "-c", k.config(), src)
	k.WaitBody(host, "v1", 30*time.Second)
	_, db, err := k.Get(host, "/env/PGDATABASE")
	if err != nil || db == "" {
		t.Fatalf("app has no database: %q %v", db, err)
	}
	exists := func() bool {
		out, err := exec.Command("su", "postgres", "-c", fmt.Sprintf(`psql -tAc "SELECT 1 FROM pg_database WHERE datname='%s'"`, db)).CombinedOutput()
		if err != nil {
			t.Fatalf("asking PostgreSQL: %v: %s", err, out)
		}
		return strings.TrimSpace(string(out)) == "1"
	}

	_, errOut := mustCLI(t, 1, "postgres", "drop", "--yes", "-c", k.config(), name)
	if !strings.Contains(errOut, "is deployed") || !exists() {
		t.Fatalf("drop of a deployed app: %s (database exists: %v)", errOut, exists())
	}
	os.Remove(filepath.Join(k.Root, "incoming", name+".keter"))
	eventually(t, 60*time.Second, func() error {
		if a := statusOf(t, k).app(name); a != nil {
			return fmt.Errorf("app still listed: %+v", a)
		}
		return nil
	})
	mustCLI(t, 0, "postgres", "drop", "--yes", "-c", k.config(), name)
	if exists() {
		t.Fatalf("database %s still exists after drop", db)
	}
	mustCLI(t, 1, "postgres", "drop", "--yes", "-c", k.config(), name)
}
