package debtest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestPackage builds the .deb and takes it through install, a run in a
// sandbox systemd behind the system nginx, upgrade, remove and purge.
func TestPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		testkit.Missing(t, "the package test runs as root (it installs keter with apt-get)")
	}
	for _, b := range []struct{ name, hint string }{
		{"dpkg-buildpackage", "apt-get install dpkg-dev"},
		{"dh", "apt-get install debhelper"},
		{"fakeroot", "apt-get install fakeroot"},
		{"lintian", "apt-get install lintian"},
		{"apt-get", "a Debian or Ubuntu machine"},
		{"nginx", "apt-get install nginx-light"},
		{"curl", "apt-get install curl"},
		{"unshare", "apt-get install util-linux"},
		{"nsenter", "apt-get install util-linux"},
		{"go", "Go from go.dev in PATH"},
	} {
		testkit.NeedBinary(t, b.name, b.hint)
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		testkit.Missing(t, "/lib/systemd/systemd missing (apt-get install systemd): %v", err)
	}

	_, self, _, _ := runtime.Caller(0)
	repo := filepath.Join(filepath.Dir(self), "..")
	cmd := exec.CommandContext(t.Context(), "bash", filepath.Join(repo, "scripts", "test-deb.sh"))
	cmd.Dir = repo
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	err := cmd.Run()
	t.Log(out.String())
	if err != nil {
		t.Fatalf("scripts/test-deb.sh: %v; last lines:\n%s", err, tail(out.String(), 30))
	}
	if !strings.Contains(out.String(), "== test-deb: PASS") {
		t.Fatal("scripts/test-deb.sh exited 0 without reaching PASS")
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
