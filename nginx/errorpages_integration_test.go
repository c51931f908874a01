package nginx

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
)

// TestManagedErrorPagesEveryStatus: with no global proxy-exception page,
// the one error location keeps each status (try_files can only end on a
// literal one): the bundle's page where it ships one, else nginx's own
// page for that status, never another status; an app's own 503 passes
// through untouched.
func TestManagedErrorPagesEveryStatus(t *testing.T) {
	f := startFront(t, "")
	f.g.ProxyExceptionResponseFile = "" // startFront sets one; the Manager renders from f.g
	ctx := t.Context()
	plain := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	base := fmt.Sprintf("http://x:%d", f.port)

	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/busy" {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, "the app's own 503")
			return
		}
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	dead := testkit.FreePort(t)

	pagedDir := filepath.Join(f.root, "temp", "paged-1")
	writeFile(t, filepath.Join(pagedDir, bundle.ErrorPages[502]), "<p>paged is down</p>")
	plainDir := filepath.Join(f.root, "temp", "plain-1")
	writeFile(t, filepath.Join(plainDir, "config", "keter.yaml"), "")
	bound := int64(300_000) // µs: nginx gives up on the slow app after 0.3 s
	timed := func(host string) bundle.Stanza {
		s := webapp(host)
		s.WebApp.ConnectionTimeBound = &bound
		return s
	}
	apps := []App{
		{Name: "paged", Dir: pagedDir, Ports: one(map[int]int{0: dead, 1: portOf(t, slow)}),
			Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("paged-down.test"), timed("paged-slow.test")}}},
		{Name: "plain", Dir: plainDir, Ports: one(map[int]int{0: dead, 1: portOf(t, slow)}),
			Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("plain-down.test"), timed("plain-slow.test")}}},
	}
	if err := f.m.Apply(ctx, apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for _, c := range []struct {
		host, path string
		status     int
		body       string
	}{
		{"paged-down.test", "/", 502, "<p>paged is down</p>"},
		{"paged-slow.test", "/", 504, "<center><h1>504 Gateway Time-out</h1></center>"},
		{"plain-down.test", "/", 502, "<center><h1>502 Bad Gateway</h1></center>"},
		{"plain-slow.test", "/", 504, "<center><h1>504 Gateway Time-out</h1></center>"},
		{"plain-slow.test", "/busy", 503, "the app's own 503"},
	} {
		eventually(t, c.host+c.path, func() error {
			a, err := get(plain, base+c.path, map[string]string{"Host": c.host})
			if err != nil {
				return err
			}
			if a.status != c.status || !strings.Contains(a.body, c.body) {
				return fmt.Errorf("%d %q, want %d with %q", a.status, a.body, c.status, c.body)
			}
			if c.status != 503 && !strings.HasPrefix(a.header.Get("Content-Type"), "text/html") {
				return fmt.Errorf("Content-Type %q", a.header.Get("Content-Type"))
			}
			return nil
		})
	}
}
