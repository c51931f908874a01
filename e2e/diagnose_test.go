package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestSandboxKillDiagnosed deploys apps that trip one sandbox rule each
// at start: Node.js with W^X turned on (V8 dies of SIGTRAP) and a Python
// app that writes under /usr (EROFS). Each deploy must fail with an error
// naming the setting and what to change, in `keter deploy`'s output, in
// `keter status` (text, one app, JSON) and on the status page, on top of
// the app's own last lines.
func TestSandboxKillDiagnosed(t *testing.T) {
	k := startKeter(t, ownPorts())
	node := langApps()[0]
	python := langApps()[2]
	if node.name != "node" || python.name != "python" {
		t.Fatalf("langApps changed order: %s, %s", node.name, python.name)
	}
	python.dir = ""
	python.extra = func(*testing.T) map[string]testkit.File {
		return map[string]testkit.File{"app.py": {Body: []byte(
			"print('writing a cache under /usr', flush=True)\nopen('/usr/keter-test-cache', 'w')\n")}}
	}

	for _, c := range []struct {
		app   string
		build func(path, host string)
		want  []string // in the hint
		log   string   // one of the app's own last lines (systemd's own
		// "Main process exited" may reach the journal after keter read it)
	}{
		{"nodewx", func(path, host string) {
			node.stanzaBundle(t, path, host, "    systemd:\n      memory-deny-write-execute: true\n")
		}, []string{"killed by SIGTRAP with W^X on", "remove memory-deny-write-execute: true"}, "v8::internal::"},
		{"erofs", func(path, host string) { python.bundle(t, path, host) },
			[]string{`printed "Read-only file system"`, "ProtectSystem=strict", "/var/lib/keter-app-erofs"}, "[Errno 30] Read-only file system"},
	} {
		t.Run(c.app, func(t *testing.T) {
			dir := filepath.Join(k.Root, "build")
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, c.app+".keter")
			c.build(path, c.app+"-"+testkit.Token()+".test")

			_, errOut := mustCLI(t, 1, "deploy", "-c", k.config(), path)
			expect(t, "keter deploy's stderr", errOut, append([]string{"likely stopped by the sandbox", c.log}, c.want...))

			overview, _ := mustCLI(t, 0, "status", "-c", k.config())
			expect(t, "keter status", overview, append([]string{c.app + ": likely stopped by the sandbox"}, c.want...))
			one, _ := mustCLI(t, 0, "status", "-c", k.config(), c.app)
			expect(t, "keter status "+c.app, one, append([]string{"hint:         likely stopped by the sandbox", c.log}, c.want...))
			a := statusOf(t, k).app(c.app)
			if a == nil || a.LastResult != "failed" {
				t.Fatalf("status --json: %+v, want the last deploy failed", a)
			}
			expect(t, "status --json last_hint", a.LastHint, c.want)
			// The page as keter's socket serves it: a TCP port may be
			// taken by another test run on this host.
			expect(t, "the status page", socketGet(t, filepath.Join(k.Root, "etc", "keter.sock"), "/"), []string{"likely stopped by the sandbox"})
		})
	}
}

// socketGet fetches path from keter's status server on its unix socket.
func socketGet(t *testing.T, socket, path string) string {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	resp, err := c.Get("http://keter" + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s on %s: %s\n%s", path, socket, resp.Status, b)
	}
	return string(b)
}

func expect(t *testing.T, what, got string, want []string) {
	t.Helper()
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, got)
		}
	}
}
