package main

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/keter-systemd/keter/acme"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/nginx"
	"github.com/keter-systemd/keter/status"
)

// newACME starts nothing yet: it prepares the ACME client when the
// config asks for one (nil otherwise).
func newACME(cfg *config.Config, log *slog.Logger) (*acme.Manager, error) {
	if !cfg.ACMEEnabled() {
		return nil, nil
	}
	// KETER_TEST_ACME_RENEW_CHECK lets the tests renew certificates that
	// live a minute; certmagic checks every 10 minutes otherwise.
	// KETER_TEST_ACME_SHARED_CHECK: how often a shared storage is read
	// for other hosts' certificates (a minute otherwise).
	every, _ := time.ParseDuration(os.Getenv("KETER_TEST_ACME_RENEW_CHECK"))
	shared, _ := time.ParseDuration(os.Getenv("KETER_TEST_ACME_SHARED_CHECK"))
	return acme.New(acme.Options{Config: cfg, Log: log, Owner: nginx.WorkerUser(), RenewCheck: every, SharedCheck: shared})
}

// refreshOnCertificates re-renders nginx when hosts get their first
// certificate (requires-secure starts redirecting), a batch at a time.
func refreshOnCertificates(ctx context.Context, m *acme.Manager, ngx *nginx.Manager, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Changes():
		}
		// Certificates ordered together arrive together: one reload.
		select {
		case <-ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
		if err := ngx.Refresh(ctx); err != nil && ctx.Err() == nil {
			log.Error("updating nginx for new certificates", "err", err)
		}
	}
}

// acmeCerts adapts the ACME client to the front door's Certs.
type acmeCerts struct{ m *acme.Manager }

func (a acmeCerts) Nginx() nginx.ACME {
	return nginx.ACME{Dir: a.m.Dir(), Fallback: a.m.Fallback(), Challenge: a.m.Socket(), Waiting: a.m.Waiting}
}

func (a acmeCerts) Ensure(ctx context.Context, hosts []string) error { return a.m.Ensure(ctx, hosts) }

func (a acmeCerts) Serving(hosts []string) { a.m.Serving(hosts) }

// statusCerts adapts the ACME client's status to the status page's.
func statusCerts(m *acme.Manager) func() []status.Cert {
	if m == nil {
		return nil
	}
	return func() []status.Cert {
		hs := m.Status()
		out := make([]status.Cert, len(hs))
		for i, h := range hs {
			out[i] = status.Cert(h)
		}
		return out
	}
}

// statusCertStorage adapts the ACME storage's state to the status page's.
func statusCertStorage(m *acme.Manager) func() status.CertStorage {
	if m == nil {
		return nil
	}
	return func() status.CertStorage { return status.CertStorage(m.StorageStatus()) }
}
