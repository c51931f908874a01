package postgres

import (
	"testing"

	"github.com/keter-systemd/keter/bundle"
)

func TestServerFor(t *testing.T) {
	tests := []struct {
		name       string
		dsn        string
		want       *bundle.Postgres
		server     string
		port       int
		adminAsIs  bool // the admin DSN reaches that server unchanged
		adminHost  string
		adminPortN int
	}{
		{"socket dsn, no preference", "host=/var/run/postgresql", nil, "127.0.0.1", 5432, true, "/var/run/postgresql", 5432},
		{"socket dsn on another port", "host=/var/run/postgresql port=5433", &bundle.Postgres{}, "127.0.0.1", 5433, true, "/var/run/postgresql", 5433},
		{"tcp dsn is where apps go too", "host=db.internal port=6000 user=k", nil, "db.internal", 6000, true, "db.internal", 6000},
		{"bundle names a server", "host=/var/run/postgresql", &bundle.Postgres{Server: "db.example.com"}, "db.example.com", 5432, false, "db.example.com", 5432},
		{"bundle names server and port", "host=/var/run/postgresql", &bundle.Postgres{Server: "10.0.0.5", Port: 6543}, "10.0.0.5", 6543, false, "10.0.0.5", 6543},
		{"bundle names only a port", "host=/var/run/postgresql", &bundle.Postgres{Port: 6543}, "127.0.0.1", 6543, false, "127.0.0.1", 6543},
		{"bundle names localhost", "host=/var/run/postgresql", &bundle.Postgres{Server: "localhost", Port: 5432}, "localhost", 5432, true, "/var/run/postgresql", 5432},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := New(tt.dsn, t.TempDir(), nil)
			server, port := p.serverFor(tt.want)
			if server != tt.server || port != tt.port {
				t.Fatalf("serverFor = %s:%d, want %s:%d", server, port, tt.server, tt.port)
			}
			if got := p.isAdminServer(server, port); got != tt.adminAsIs {
				t.Errorf("isAdminServer = %v, want %v", got, tt.adminAsIs)
			}
			cfg, err := p.adminConfig(server, port)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tt.adminHost || int(cfg.Port) != tt.adminPortN || cfg.Database != "postgres" || cfg.ConnectTimeout == 0 {
				t.Errorf("admin connects to host=%s port=%d db=%q timeout=%v", cfg.Host, cfg.Port, cfg.Database, cfg.ConnectTimeout)
			}
		})
	}
}

func TestBadDSN(t *testing.T) {
	p := New("host=x port=notanumber", t.TempDir(), nil)
	if _, err := p.Ensure(t.Context(), "app", nil); err == nil {
		t.Fatal("Ensure with a bad admin dsn succeeded")
	}
	if err := p.Drop(t.Context(), "app"); err == nil {
		t.Fatal("Drop with a bad admin dsn succeeded")
	}
}
