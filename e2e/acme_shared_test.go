package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/status"
)

// TestACMESharedStorage: keter with `acme: storage:` a PostgreSQL
// database (password in a passfile) gets a host's certificate into it and
// serves it; keter status, --json and /metrics show the storage. With the
// database refusing keter's role, HTTPS keeps serving the certificate,
// also across a keter restart, and status says the storage is
// unreachable, with the error and never the password; once it is back,
// nothing is ordered again.
func TestACMESharedStorage(t *testing.T) {
	db := testkit.Postgres(t)
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	k := startACMEKeterWith(t, port, ca, fmt.Sprintf("  storage: %q\n", db.DSN), "KETER_TEST_ACME_SHARED_CHECK=1s")
	host := "shared-" + testkit.Token() + ".test"
	k.deploy("shared", fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, shared]\n    hosts: [%s]\n", host))
	c := k.https(k.caRoots())
	eventually(t, 90*time.Second, func() error { _, _, err := getTLS(c, host, "/"); return err })
	// storage is the storage as keter status --json shows it (keter may
	// be restarting: an error, not a failure).
	storage := func() (status.CertStorage, error) {
		out, errOut, code := cli(t, "status", "-c", k.config(), "--json")
		var st struct {
			CertStorage *status.CertStorage `json:"cert_storage"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || st.CertStorage == nil {
			return status.CertStorage{}, fmt.Errorf("keter status --json: exit %d, %v\n%s%s", code, err, out, errOut)
		}
		return *st.CertStorage, nil
	}
	if s, err := storage(); err != nil || s.Kind != "postgres" || !s.Shared || !s.Reachable || !strings.Contains(s.Where, db.Name) {
		t.Errorf("storage in status: %+v %v", s, err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", k.StatusPort)
	if got := metric(t, base, `keter_certificate_storage_up{kind="postgres"}`); got != "1" {
		t.Errorf("keter_certificate_storage_up = %q, want 1", got)
	}

	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" NOLOGIN")
	testkit.SuperSQL(t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '"+db.Role+"'")
	unreachable := func() error {
		s, err := storage()
		if err != nil {
			return err
		}
		if s.Reachable || !strings.Contains(s.Error, "not permitted to log in") {
			return fmt.Errorf("storage in status: %+v", s)
		}
		out, _ := mustCLI(t, 0, "status", "-c", k.config())
		if !strings.Contains(out, "UNREACHABLE") || strings.Contains(out, db.Password) || strings.Contains(s.Error, db.Password) {
			return fmt.Errorf("keter status:\n%s", out)
		}
		if got := metric(t, base, `keter_certificate_storage_up{kind="postgres"}`); got != "0" {
			return fmt.Errorf("keter_certificate_storage_up = %q, want 0", got)
		}
		return nil
	}
	eventually(t, 30*time.Second, unreachable)
	if _, body, err := getTLS(c, host, "/"); err != nil || body != "shared" {
		t.Errorf("HTTPS with the database down: %q %v", body, err)
	}
	k.restart("KETER_TEST_ACME_SHARED_CHECK=1s")
	eventually(t, 30*time.Second, unreachable)
	if _, body, err := getTLS(c, host, "/"); err != nil || body != "shared" {
		t.Errorf("HTTPS with the database down after a keter restart: %q %v", body, err)
	}
	if cert := k.certs()[host]; cert.State != "valid" {
		t.Errorf("status of %s with the database down: %+v", host, cert)
	}

	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" LOGIN")
	eventually(t, 30*time.Second, func() error {
		if s, err := storage(); err != nil || !s.Reachable {
			return fmt.Errorf("storage in status: %+v %v", s, err)
		}
		if cert := k.certs()[host]; cert.State != "valid" || cert.LastError != "" {
			return fmt.Errorf("status of %s: %+v", host, cert)
		}
		return nil
	})
	if n := ca.Issued(); n != 1 {
		t.Errorf("%d certificates issued, want 1", n)
	}
}
