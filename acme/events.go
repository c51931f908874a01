package acme

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/certmagic"
)

// onEvent follows certmagic: a certificate obtained, renewed or loaded
// from storage goes to nginx's file; a failure is recorded for status.
// certmagic calls it synchronously: it must stay quick.
func (m *Manager) onEvent(ctx context.Context, event string, data map[string]any) error {
	host, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtaining":
		m.log.Info("asking the CA for a certificate", "host", host, "renewal", renewal, "ca", m.acme.Directory)
	case "cert_obtained":
		m.install(ctx, host, renewal)
	case "cached_managed_cert":
		names, _ := data["sans"].([]string)
		for _, h := range names {
			m.install(ctx, h, false)
		}
	case "cert_failed":
		err, _ := data["error"].(error)
		if err == nil {
			err = errors.New("unknown error")
		}
		m.failed(host, renewal, err)
	}
	return nil
}

// install copies host's certificate from storage into nginx's file.
func (m *Manager) install(ctx context.Context, host string, renewal bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.hosts[host]; !ok {
		return // not one of ours (never happens with one config)
	}
	leaf, data, err := m.stored(ctx, host)
	if err != nil {
		m.recordErr(host, renewal, fmt.Errorf("reading the certificate from storage: %w", err))
		return
	}
	st := m.hosts[host]
	first := !time.Now().Before(st.notAfter)
	if old, err := readFile(m.file(host)); err != nil || !bytes.Equal(old, data) {
		if err := m.writeOwned(m.file(host), data); err != nil {
			m.recordErr(host, renewal, err)
			return
		}
		m.log.Info("certificate in place", "host", host, "issuer", leaf.Issuer.CommonName,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "renewal", renewal)
	}
	st.checked, st.notAfter, st.issuer = true, leaf.NotAfter, leaf.Issuer.CommonName
	st.lastErr, st.errAt = "", time.Time{}
	if first {
		select {
		case m.changed <- struct{}{}:
		default:
		}
	}
}

// failed records a failed order; certmagic retries with backoff.
func (m *Manager) failed(host string, renewal bool, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recordErr(host, renewal, err)
}

func (m *Manager) recordErr(host string, renewal bool, err error) {
	st := m.host(host)
	st.lastErr, st.errAt, st.renewal = err.Error(), time.Now(), renewal
	m.log.Warn("getting a certificate failed; retrying with backoff", "host", host, "renewal", renewal, "err", err)
}

// stored reads host's certificate and key from storage as nginx's file:
// the chain, then the key.
func (m *Manager) stored(ctx context.Context, host string) (*x509.Certificate, []byte, error) {
	ik := m.issuer.IssuerKey()
	chain, err := m.storage.Load(ctx, certmagic.StorageKeys.SiteCert(ik, host))
	if err != nil {
		return nil, nil, err
	}
	key, err := m.storage.Load(ctx, certmagic.StorageKeys.SitePrivateKey(ik, host))
	if err != nil {
		return nil, nil, err
	}
	block, _ := pem.Decode(chain)
	if block == nil {
		return nil, nil, fmt.Errorf("no PEM certificate for %s in storage", host)
	}
	leaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("parsing the certificate of %s: %w", host, err)
	}
	data := append(bytes.TrimRight(chain, "\n"), '\n')
	return leaf, append(data, key...), nil
}
