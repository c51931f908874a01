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

// TestCertStorage: a shared storage that does not answer is shown with
// its error by the API, the page and /metrics; a keter without ACME has
// none to show.
func TestCertStorage(t *testing.T) {
	since := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	cs := CertStorage{Kind: "postgres", Where: "database keter_acme as keter on db.internal:5432", Shared: true,
		Error: `failed to connect: FATAL: role "keter" is not permitted to log in`, Since: since}
	for _, tc := range []struct {
		name    string
		storage func() CertStorage
		certs   []Cert
	}{
		{"shared and down", func() CertStorage { return cs }, []Cert{{Host: "shop.test", State: "valid"}}},
		{"shared and down, no hosts yet", func() CertStorage { return cs }, nil},
		{"no acme", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			os.MkdirAll(filepath.Join(dir, "incoming"), 0o755)
			core := &fakeCore{apps: []app.AppStatus{}}
			s := New(Options{Core: core, Units: fakeUnits{}, CertStorage: tc.storage,
				Certs:  func() []Cert { return tc.certs },
				Listen: "127.0.0.1:0", Socket: filepath.Join(dir, "keter.sock"), Incoming: filepath.Join(dir, "incoming")})
			if err := s.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { s.Serve(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			got, err := NewClient(filepath.Join(dir, "keter.sock")).CertStorage(t.Context())
			base := "http://" + s.Addr().String()
			_, m := get(t, base+"/metrics")
			_, page := get(t, base+"/")
			if tc.storage == nil {
				if got != nil || err != nil || strings.Contains(m, "keter_certificate_storage_up") || strings.Contains(page, `id="cert-storage"`) {
					t.Errorf("without a storage: %+v %v", got, err)
				}
				return
			}
			if err != nil || got == nil || *got != cs {
				t.Fatalf("API: %+v %v, want %+v", got, err, cs)
			}
			if !strings.Contains(m, `keter_certificate_storage_up{kind="postgres"} 0`+"\n") {
				t.Errorf("/metrics lacks the storage being down:\n%s", m)
			}
			if !strings.Contains(page, `id="cert-storage"`) || !strings.Contains(page, "unreachable") ||
				!strings.Contains(page, "not permitted to log in") || !strings.Contains(page, "db.internal:5432") {
				t.Errorf("page lacks the storage being down:\n%s", page)
			}
		})
	}
}
