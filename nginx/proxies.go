package nginx

import (
	"fmt"
	"strconv"

	"github.com/keter-systemd/keter/config"
)

// Behind a load balancer. trusted-proxies lists the addresses whose
// X-Forwarded-For and X-Forwarded-Proto nginx believes: real_ip takes the
// client's address from the first untrusted hop of the chain, the app
// gets the chain extended and the scheme the proxy saw, and a
// requires-secure site redirects only requests that were plain at the
// proxy. From any other address both headers are overwritten, as at the
// edge. ip-from-header alone keeps Keter's meaning: everyone is believed
// for the address (never for the scheme).

// behindProxies reports whether trusted-proxies is set.
func (r *renderer) behindProxies() bool { return len(r.g.TrustedProxies) > 0 }

// proxyMaps renders the variables proxyHeaders and secureCheck use.
func (r *renderer) proxyMaps(w *writer) {
	switch {
	case r.behindProxies():
		// By the address that connected, before real_ip replaced it.
		w.open("geo", "$realip_remote_addr", "$keter_trusted")
		w.line("default", "0")
		for _, p := range r.g.TrustedPrefixes() {
			w.line(p.String(), "1")
		}
		w.close()
		w.open("map", "$http_x_forwarded_for", "$keter_forwarded_chain")
		w.line("default", q("$http_x_forwarded_for, $realip_remote_addr"))
		w.line(`""`, "$realip_remote_addr")
		w.close()
		w.open("map", "$keter_trusted", "$keter_forwarded_for")
		w.line("default", "$remote_addr")
		w.line("1", "$keter_forwarded_chain")
		w.close()
		w.open("map", "$keter_trusted$http_x_forwarded_proto", "$keter_forwarded_proto")
		w.line("default", "$scheme")
		w.line("1http", "http")
		w.line("1https", "https")
		w.close()
	case r.g.IPFromHeader:
		// $proxy_add_x_forwarded_for would append the address real_ip
		// took from the header; the chain's last hop is the proxy's.
		w.open("map", "$http_x_forwarded_for", "$keter_forwarded_for")
		w.line("default", q("$http_x_forwarded_for, $realip_remote_addr"))
		w.line(`""`, "$realip_remote_addr")
		w.close()
	}
}

// realIP takes the client's address from X-Forwarded-For sent by those
// keter trusts: the proxies listed, or everyone with ip-from-header alone.
func (r *renderer) realIP(w *writer) {
	switch {
	case r.behindProxies():
		for _, p := range r.g.TrustedPrefixes() {
			w.line("set_real_ip_from", p.String())
		}
	case r.g.IPFromHeader:
		w.line("set_real_ip_from", "0.0.0.0/0")
		w.line("set_real_ip_from", "::/0")
	default:
		return
	}
	w.line("real_ip_header", "X-Forwarded-For")
	w.line("real_ip_recursive", "on")
}

// forwardedFor is the X-Forwarded-For the app gets: the address nginx saw
// (a client's own header is a forgery waiting to be believed), or behind
// a trusted proxy the chain extended by the proxy's address.
func (r *renderer) forwardedFor() string {
	if r.behindProxies() || r.g.IPFromHeader {
		return "$keter_forwarded_for"
	}
	return "$remote_addr"
}

// forwardedProto is the X-Forwarded-Proto the app gets.
func (r *renderer) forwardedProto() string {
	if r.behindProxies() {
		return "$keter_forwarded_proto"
	}
	return "$scheme"
}

// httpsTarget is where requires-secure sends a plain request.
func (r *renderer) httpsTarget() string {
	target := "https://$host"
	if p := r.g.ExternalHTTPSPort; p != 0 && p != 443 {
		target += ":" + strconv.Itoa(p)
	}
	return q(target + "$request_uri")
}

// plainRedirect reports whether a site's plain server redirects every
// request (the edge: plain is plain) rather than only those a trusted
// proxy says were plain; it notes the latter on s for locationChecks.
func (r *renderer) plainRedirect(s *site, tls bool) bool {
	plain := s.secure && !tls && !r.waiting(s)
	s.checkPlain = plain && r.behindProxies()
	return plain && !s.checkPlain
}

// locationChecks come first in each of a site's locations: the
// requires-secure redirect of a request a trusted proxy got over plain
// HTTP (per location, so that the ACME challenge and the health check
// path, locations of their own, still answer), then the maintenance gate.
func (r *renderer) locationChecks(w *writer, s *site) {
	if s.checkPlain {
		w.open("if", "($keter_forwarded_proto", "=", "http)")
		w.line("return", "301", r.httpsTarget())
		w.close()
	}
	gateCheck(w, s)
}

// checkProxies refuses a trusted-proxies entry that is not an address or
// CIDR; config.Validate does too, but Render trusts no caller.
func (r *model) checkProxies() error {
	for i, s := range r.g.TrustedProxies {
		if _, err := config.ParseTrusted(s); err != nil {
			return fmt.Errorf("trusted-proxies[%d] %q: must be an address or CIDR such as 10.0.0.0/8: %w", i, s, ErrInvalid)
		}
	}
	return nil
}
