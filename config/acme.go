package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/keter-systemd/keter/acme/pgstore"
)

// LetsEncrypt is the default ACME directory: Let's Encrypt's production CA.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// ACME is the `acme` key: the CA that certifies the hosts of listeners
// with `acme: true` and of stanzas with `ssl: acme`.
type ACME struct {
	// Email is the CA account's contact, where expiry warnings go.
	Email string `yaml:"email"`
	// Directory is the CA's ACME directory URL.
	Directory string `yaml:"directory"`
	// TrustedRoots is a PEM file of roots to trust when talking to the
	// CA (private CAs: step-ca, Pebble); the system's roots otherwise.
	TrustedRoots string `yaml:"trusted-roots"`
	// Storage is a PostgreSQL connection string (libpq URL or
	// keyword/value) where several keters share the account,
	// certificates, challenges and locks; "" keeps them in local files.
	Storage string `yaml:"storage"`
}

// ACMEEnabled reports whether keter runs an ACME client at all.
func (c *Config) ACMEEnabled() bool { return c.ACME.Email != "" }

// ACMEListener reports whether a listener asks for ACME certificates for
// every app host.
func (c *Config) ACMEListener() bool {
	for _, l := range c.Listeners {
		if l.ACME {
			return true
		}
	}
	return false
}

// ACMEServes reports whether host gets its certificate from the CA
// without the stanza asking (an ACME listener, a host that can get one):
// such hosts count as ssl for APPROOT.
func (c *Config) ACMEServes(host string) bool {
	return c.ACMEEnabled() && c.ACMEListener() && c.ACME.Skip(host) == ""
}

// publicCAs refuse names no one can own; a private CA may not.
var publicCAs = map[string]bool{
	"acme-v02.api.letsencrypt.org":         true,
	"acme-staging-v02.api.letsencrypt.org": true,
}

// specialTLDs are reserved for tests, documentation and local networks
// (RFC 2606, 6761, 6762, 7686, 8375, 9476, ICANN's .internal).
var specialTLDs = []string{"test", "example", "invalid", "localhost", "local", "onion", "alt", "internal", "home.arpa"}

// Skip says why host cannot get a certificate by HTTP-01 from this CA,
// or "" when it can.
func (a ACME) Skip(host string) string {
	h := strings.ToLower(strings.TrimSuffix(host, "."))
	switch {
	case strings.HasPrefix(h, "*."):
		return "a wildcard name needs the DNS-01 challenge, not HTTP-01"
	case net.ParseIP(strings.Trim(h, "[]")) != nil:
		return "an IP address"
	case h == "localhost" || strings.HasSuffix(h, ".localhost"):
		return "a localhost name"
	}
	u, err := url.Parse(a.Directory)
	if err != nil || !publicCAs[u.Hostname()] {
		return ""
	}
	if !strings.Contains(h, ".") {
		return "a single-label name, which a public CA does not certify"
	}
	for _, tld := range specialTLDs {
		if strings.HasSuffix(h, "."+tld) {
			return "a special-use name (." + tld + "), which a public CA does not certify"
		}
	}
	return ""
}

func (c *Config) validateACME() []error {
	var errs []error
	plain := false
	for i, l := range c.Listeners {
		if l.ACME && (l.Certificate != "" || l.Key != "") {
			errs = append(errs, fmt.Errorf("listeners[%d]: acme and certificate exclude each other: the listener serves either your certificate or ACME ones (a stanza's own ssl: {certificate, key} still wins for its hosts)", i))
		}
		if !l.Secure() {
			plain = true
		}
	}
	if c.ACMEListener() && c.ACME.Email == "" {
		errs = append(errs, errors.New("acme.email: required when a listener says acme: true (the CA's account contact, where expiry warnings go)"))
	}
	if c.ACMEEnabled() && !plain {
		errs = append(errs, errors.New("listeners: ACME needs a plain-HTTP listener (port 80, or the port your public port 80 is forwarded to): the CA checks the HTTP-01 challenge over plain HTTP"))
	}
	if e := c.ACME.Email; e != "" && (!strings.Contains(e, "@") || strings.ContainsAny(e, " \t\n<>,;")) {
		errs = append(errs, fmt.Errorf("acme.email: %q is not an email address", e))
	}
	if u, err := url.Parse(c.ACME.Directory); c.ACME.Directory != "" && (err != nil || u.Scheme != "https" || u.Host == "") {
		errs = append(errs, fmt.Errorf("acme.directory: %q is not an https:// URL (ACME runs over HTTPS)", c.ACME.Directory))
	}
	if st := c.ACME.Storage; st != "" {
		if u, err := url.Parse(st); err == nil && u.Scheme != "" && u.Scheme != "postgres" && u.Scheme != "postgresql" {
			errs = append(errs, fmt.Errorf("acme.storage: %s:// is not supported; give a PostgreSQL connection string (postgres://USER@HOST/DB or host=... dbname=...)", u.Scheme))
		} else if err := pgstore.Validate(st); err != nil {
			errs = append(errs, fmt.Errorf("acme.storage: %w", err))
		}
	}
	return errs
}
