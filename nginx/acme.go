package nginx

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// ACME says how the config serves certificates from an ACME CA; nil in
// Paths when keter runs no ACME client.
//
// A host's certificate is one file, Dir/HOST.pem (the chain, then the
// key), that nginx reads at each TLS handshake (ssl_certificate with a
// variable, nginx 1.15.9+). Replacing the file by a rename swaps key and
// chain together, so a new or renewed certificate needs no reload.
type ACME struct {
	Dir string
	// Fallback is the temporary certificate of names without a file.
	Fallback string
	// Challenge is the unix socket of keter's HTTP-01 responder, which
	// every plain-HTTP server proxies /.well-known/acme-challenge/ to.
	Challenge string
	// Waiting reports a host that will get a certificate but has none
	// yet: requires-secure sends it to https only once it has.
	Waiting func(host string) bool
}

// Certs is the ACME client as the front door needs it; the acme package
// implements it.
type Certs interface {
	Nginx() ACME
	// Ensure gives every host its file in Dir (a temporary certificate
	// until the CA's arrives): nginx names a file only after Ensure
	// returned.
	Ensure(ctx context.Context, hosts []string) error
	// Serving says nginx now serves exactly these hosts from ACME, and
	// answers their HTTP-01 challenges: only then may the CA be asked.
	Serving(hosts []string)
}

// WithACME serves certificates from c to ACME listeners and ssl: acme
// stanzas, and answers HTTP-01 challenges on every plain listener.
func WithACME(c Certs) Option {
	return func(m *Manager) {
		m.certs = c
		a := c.Nginx()
		m.acme = &a
	}
}

// Refresh renders the last applied apps again: a host whose certificate
// arrived changes what requires-secure does. An unchanged config is not
// reloaded, so certificates that change nothing cost nothing.
func (m *Manager) Refresh(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		return nil // nothing applied yet: the first Apply renders anyway
	}
	return m.served(m.apply(ctx, m.last))
}

// served tells the ACME client which hosts the config in force serves,
// once an apply succeeded: an order started before nginx answers the
// challenge would fail it.
func (m *Manager) served(err error) error {
	if err == nil && m.certs != nil {
		m.certs.Serving(m.acmeHosts)
	}
	return err
}

// ensureCerts runs before a config that names certificate files is
// tested and loaded.
func (m *Manager) ensureCerts(ctx context.Context, out *Output) error {
	if m.certs == nil {
		return nil
	}
	if err := m.certs.Ensure(ctx, out.ACMEHosts); err != nil {
		return fmt.Errorf("preparing ACME certificates: %w", err)
	}
	m.acmeHosts = out.ACMEHosts
	waiting := map[string]bool{}
	for _, h := range out.SecureWaiting {
		waiting[h] = true
		if !m.waiting[h] {
			m.log.Info("requires-secure host served over plain HTTP until its certificate arrives", "host", h)
		}
	}
	m.waiting = waiting
	return nil
}

// acmeVar names the certificate file of the handshake's server name.
const acmeVar = "$keter_acme_cert"

// acmeCert is what a server serves from the ACME map: one file, chain
// and key.
func acmeCert(session bool) *cert {
	return &cert{file: acmeVar, key: acmeVar, session: session, acme: true}
}

// servedByACME reports whether a site's TLS servers use the ACME map on
// at least one listener.
func (r *model) servedByACME(s *site) bool {
	if s.sni != nil {
		return s.sni.acme
	}
	for _, l := range r.listeners {
		if l.tls != nil && l.tls.acme {
			return true
		}
	}
	return false
}

// acmeHosts lists the names the ACME map gives a file: wildcards never
// get one by HTTP-01 and fall to the temporary certificate.
func (r *model) acmeHosts() []string {
	var hs []string
	for _, s := range r.sites {
		if !r.servedByACME(s) {
			continue
		}
		for _, h := range s.hosts {
			if !strings.HasPrefix(h, "*.") {
				hs = append(hs, h)
			}
		}
	}
	slices.Sort(hs)
	return slices.Compact(hs)
}

// waiting reports a requires-secure site that must not redirect yet: one
// of its hosts is still waiting for its first certificate.
func (r *model) waiting(s *site) bool {
	if !s.secure || r.p.ACME == nil || r.p.ACME.Waiting == nil || !r.servedByACME(s) {
		return false
	}
	for _, h := range s.hosts {
		if r.p.ACME.Waiting(h) {
			return true
		}
	}
	return false
}

// secureWaiting lists the hosts of sites waiting() holds back.
func (r *model) secureWaiting() []string {
	var hs []string
	for _, s := range r.sites {
		if r.waiting(s) {
			hs = append(hs, s.hosts...)
		}
	}
	return hs
}

// checkACME validates the paths Render writes for ACME.
func (r *model) checkACME() error {
	a := r.p.ACME
	if a == nil {
		return nil
	}
	for what, p := range map[string]string{"ACME certificate folder": a.Dir, "ACME fallback certificate": a.Fallback, "ACME challenge socket": a.Challenge} {
		if err := checkPath(what, p); err != nil {
			return err
		}
	}
	return nil
}

// acmeMap picks each handshake's certificate file by its server name;
// names without one (no SNI, unknown, wildcard) get the fallback.
func (r *renderer) acmeMap(w *writer) {
	if r.p.ACME == nil {
		return
	}
	w.open("map", "$ssl_server_name", acmeVar)
	w.line("default", q(r.p.ACME.Fallback))
	for _, h := range r.acmeHosts() {
		w.line(q(h), q(r.p.ACME.Dir+"/"+h+".pem"))
	}
	w.close()
}

// acmeChallenge answers HTTP-01 for every host on a plain server, also
// for requires-secure ones: the CA asks over plain HTTP, on renewals too.
func (r *renderer) acmeChallenge(w *writer) {
	if r.p.ACME == nil {
		return
	}
	w.open("location", "^~", "/.well-known/acme-challenge/")
	w.line("proxy_pass", q("http://unix:"+r.p.ACME.Challenge+":"))
	w.line("proxy_set_header", "Host", "$host")
	w.close()
}

// sslACME serves a stanza's hosts ACME certificates by SNI, on every TLS
// listener, whatever the listener's own certificate.
func (r *model) sslACME(s *site) error {
	if r.p.ACME == nil {
		return fmt.Errorf("ssl: acme: keter runs no ACME client: set acme.email in keter-config.yaml: %w", ErrInvalid)
	}
	found := false
	for _, l := range r.listeners {
		found = found || l.tls != nil
	}
	if !found {
		return fmt.Errorf("ssl: acme: keter has no TLS listener to serve the certificate on: add one to keter-config.yaml's listeners (e.g. port: 443, acme: true): %w", ErrInvalid)
	}
	s.sni = acmeCert(false) // servers() takes session from the listener
	return nil
}

// WorkerUser is who nginx's workers run as: the user that reads ACME
// certificate files at each handshake.
func WorkerUser() string { return workerUser() }
