package acme

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

// owner is the user the tests give nginx's files to.
const owner = "nobody"

func testConfig(t testing.TB, root, directory, roots string) *config.Config {
	t.Helper()
	y := fmt.Sprintf("root: %s\nlisteners: [{port: 80}, {port: 443, acme: true}]\nacme:\n  email: ops@example.com\n  directory: %s\n", root, directory)
	if roots != "" {
		y += "  trusted-roots: " + roots + "\n"
	}
	g, _, err := config.Parse([]byte(y), root)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		testkit.Missing(t, "the acme tests run as root: they give files to nginx's worker user")
	}
}

// leafOf parses the first certificate of a file nginx reads.
func leafOf(t testing.TB, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, rest := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		t.Fatalf("%s does not start with a certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for len(rest) > 0 {
		if b, rest = pem.Decode(rest); b == nil {
			t.Fatalf("%s: trailing garbage", path)
		} else if b.Type == "EC PRIVATE KEY" || b.Type == "PRIVATE KEY" || b.Type == "RSA PRIVATE KEY" {
			return c
		}
	}
	t.Fatalf("%s holds no private key", path)
	return nil
}

func checkMode(t testing.TB, path string, mode os.FileMode, uid int) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
	if st := fi.Sys().(*syscall.Stat_t); uid >= 0 && int(st.Uid) != uid {
		t.Errorf("%s: owner %d, want %d", path, st.Uid, uid)
	}
}

// TestEnsure: every host gets a temporary certificate at once, readable
// by nginx's workers only; hosts HTTP-01 cannot serve are skipped, not
// waited for. Nothing talks to the CA (nobody listens at its address).
func TestEnsure(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	m, err := New(Options{Config: testConfig(t, root, "https://127.0.0.1:1/dir", ""), Owner: owner, Log: slog.Default()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.cache.Stop()
	if err := m.Ensure(t.Context(), []string{"shop.example.com", "localhost", "10.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	if s := m.Status(); len(s) != 0 {
		t.Errorf("Ensure alone started managing %+v: nginx does not serve the challenges yet", s)
	}
	m.Serving([]string{"shop.example.com", "localhost", "10.0.0.1"})
	uid := m.uid
	for _, h := range []string{"shop.example.com", "localhost", "10.0.0.1"} {
		path := filepath.Join(m.Dir(), h+".pem")
		c := leafOf(t, path)
		if len(c.Subject.Organization) == 0 || c.Subject.Organization[0] != TemporaryOrg || c.DNSNames[0] != h {
			t.Errorf("%s: %v %v, want a temporary certificate for it", h, c.Subject, c.DNSNames)
		}
		checkMode(t, path, 0o600, uid)
	}
	leafOf(t, m.Fallback())
	checkMode(t, m.Fallback(), 0o600, uid)
	checkMode(t, m.Dir(), 0o700, uid)
	checkMode(t, filepath.Join(root, "etc", "acme"), 0o700, 0)
	checkMode(t, m.Socket(), 0o666, -1)

	if !m.Waiting("shop.example.com") || m.Waiting("localhost") {
		t.Error("Waiting: want shop.example.com waiting, localhost skipped")
	}
	states := map[string]string{}
	for _, h := range m.Status() {
		states[h.Host] = h.State
	}
	want := map[string]string{"shop.example.com": StateObtaining, "localhost": StateSkipped, "10.0.0.1": StateSkipped}
	if fmt.Sprint(states) != fmt.Sprint(want) {
		t.Errorf("status %v, want %v", states, want)
	}

	// A file in place is kept: Ensure never replaces a certificate.
	before, _ := os.ReadFile(filepath.Join(m.Dir(), "shop.example.com.pem"))
	if err := m.Ensure(t.Context(), []string{"shop.example.com"}); err != nil {
		t.Fatal(err)
	}
	m.Serving([]string{"shop.example.com"})
	if after, _ := os.ReadFile(filepath.Join(m.Dir(), "shop.example.com.pem")); string(after) != string(before) {
		t.Error("a second Ensure replaced the certificate")
	}
	if got := len(m.Status()); got != 1 {
		t.Errorf("status lists %d hosts after Ensure named one", got)
	}
}

func TestNewRefusesBadTrustedRoots(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	bad := filepath.Join(root, "roots.pem")
	os.WriteFile(bad, []byte("not a certificate"), 0o644)
	for _, roots := range []string{bad, filepath.Join(root, "missing.pem")} {
		if _, err := New(Options{Config: testConfig(t, root, config.LetsEncrypt, roots), Owner: owner}); err == nil {
			t.Errorf("trusted-roots %s accepted", roots)
		}
	}
}
