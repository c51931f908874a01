package status

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/app"
)

// TestCerts: each host's certificate reaches the API (with its app), the
// page and /metrics, errors included.
func TestCerts(t *testing.T) {
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	certs := []Cert{
		{Host: "shop.test", State: "valid", Issuer: "Pebble Intermediate CA 1", NotAfter: expiry},
		{Host: "broken.test", State: "failed", LastError: "authorization failed: connection refused", LastErrorAt: expiry.Add(-time.Hour)},
	}
	core := &fakeCore{apps: []app.AppStatus{{Name: "shop", LastResult: "live",
		Live: &app.VersionStatus{Version: "v1", Hosts: []string{"shop.test", "broken.test", "plain.test"}}}}}
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "incoming"), 0o755)
	s := New(Options{Core: core, Units: fakeUnits{}, Certs: func() []Cert { return certs },
		Listen: "127.0.0.1:0", Socket: filepath.Join(dir, "keter.sock"), Incoming: filepath.Join(dir, "incoming")})
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	c := NewClient(filepath.Join(dir, "keter.sock"))

	all, err := c.Certs(t.Context())
	if err != nil || len(all) != 2 || all[0].NotAfter != expiry || all[1].LastError == "" {
		t.Fatalf("certs: %+v %v", all, err)
	}
	a, err := c.App(t.Context(), "shop", 0)
	if err != nil || len(a.Certs) != 2 || a.Certs[0].Host != "shop.test" || a.Certs[1].State != "failed" {
		t.Fatalf("app certs: %+v %v", a.Certs, err)
	}
	base := "http://" + s.Addr().String()
	if code, m := get(t, base+"/metrics"); code != 200 ||
		!strings.Contains(m, `keter_certificate_expiry_timestamp_seconds{host="shop.test"} 1893553445`+"\n") ||
		strings.Contains(m, `{host="broken.test"}`) {
		t.Errorf("/metrics: want the expiry of shop.test only:\n%s", m)
	}
	if code, page := get(t, base+"/"); code != 200 || !strings.Contains(page, `id="cert-shop.test"`) ||
		!strings.Contains(page, "Pebble Intermediate CA 1") || !strings.Contains(page, "connection refused") {
		t.Errorf("page lacks the certificates:\n%s", page)
	}
}
