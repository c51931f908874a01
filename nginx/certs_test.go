package nginx

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// writeTestCerts makes the files renderCases refer to: cert.pem/key.pem
// (the listener's), chain.pem (an intermediate), a.pem/a.key, b.pem/b.key.
func writeTestCerts(t testing.TB, dir string) {
	t.Helper()
	testkit.SelfSigned(t, dir, "cert", "listener.test", "localhost")
	testkit.SelfSigned(t, dir, "chain", "intermediate.test")
	testkit.SelfSigned(t, dir, "a", "a.example.com")
	testkit.SelfSigned(t, dir, "b", "b.example.com")
	// renderCases name the listener key key.pem.
	if err := os.Rename(filepath.Join(dir, "cert.key"), filepath.Join(dir, "key.pem")); err != nil {
		t.Fatal(err)
	}
}
