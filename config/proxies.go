package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// TrustedPrefixes returns trusted-proxies as validated prefixes, a bare
// address as a one-address prefix; Validate has refused anything else.
func (c *Config) TrustedPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range c.TrustedProxies {
		if p, err := ParseTrusted(s); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// ParseTrusted reads one trusted-proxies entry: a CIDR or an address.
func ParseTrusted(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q: an address with a zone", s)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func (c *Config) validateProxies() []error {
	var errs []error
	for i, s := range c.TrustedProxies {
		if _, err := ParseTrusted(s); err != nil {
			errs = append(errs, fmt.Errorf("trusted-proxies[%d]: %q is not an address or CIDR such as 10.0.0.0/8 or 2001:db8::/32 (no zone)", i, s))
		}
	}
	return errs
}

// proxyWarnings says when ip-from-header trusts every client.
func (c *Config) proxyWarnings() []Warning {
	switch {
	case c.IPFromHeader && len(c.TrustedProxies) == 0:
		return []Warning{"ip-from-header: true believes X-Forwarded-For from every client, so anyone can pick the address the app sees; list your load balancers in trusted-proxies instead (see docs/nginx.md)"}
	case c.IPFromHeader:
		return []Warning{"ip-from-header is implied by trusted-proxies, which limits it to the proxies listed"}
	}
	return nil
}
