package nginx

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/bundle"
)

// This file renders a stanza's access rules: Keter's basic-auth, local and
// rate-limiter middleware and our allow-from / deny-from. They go inside
// the site's own locations only, never at server level, so keter's
// locations (the ACME challenge, the healthcheck path, the internal
// response pages, the maintenance gate) are never behind them. The
// readiness probe goes to the app's port directly, not through nginx.

// access is one site's validated rules.
type access struct {
	local       *bundle.Local
	allow, deny []netip.Prefix
	auth        *authRule
	limits      []limit
}

// authRule is a site's basic auth: the user file is keter's (content set)
// or the operator's (content nil).
type authRule struct {
	realm   string
	file    string
	content []byte
}

// limit is one throttle: a zone of its own at http level.
type limit struct {
	zone  string
	rate  string
	burst int
}

// localVar is 1 for the host's own addresses (Keter's local middleware).
const localVar = "$keter_local_client"

// LimitZoneSize is each throttle's shared memory: about 160,000 client
// addresses (64 bytes each); nginx forgets the least recent when full.
const LimitZoneSize = "10m"

// stanzaAccess is a stanza's allow-from and deny-from.
func stanzaAccess(st bundle.Stanza) bundle.Access {
	switch {
	case st.WebApp != nil:
		return st.WebApp.Access
	case st.StaticFiles != nil:
		return st.StaticFiles.Access
	case st.ReverseProxy != nil:
		return st.ReverseProxy.Access
	}
	return bundle.Access{}
}

// addresses validates allow-from and deny-from with net/netip: only its
// canonical text reaches the config.
func (r *model) addresses(s *site, a bundle.Access) error {
	var errs []error
	for _, l := range []struct {
		key  string
		from []string
		to   *[]netip.Prefix
	}{{"deny-from", a.DenyFrom, &s.acc.deny}, {"allow-from", a.AllowFrom, &s.acc.allow}} {
		for i, v := range l.from {
			p, err := bundle.ParsePrefix(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %v: %w", l.key, i, err, ErrInvalid))
				continue
			}
			*l.to = append(*l.to, p)
		}
	}
	return errors.Join(errs...)
}

// accessMiddleware reads Keter's basic-auth, local and rate-limiter items.
func (r *model) accessMiddleware(s *site, m bundle.Middleware) error {
	switch m.Name {
	case "basic-auth":
		if s.acc.auth != nil {
			return fmt.Errorf("middleware basic-auth: one per stanza: %w", ErrInvalid)
		}
		b, err := m.BasicAuth()
		if err != nil {
			return fmt.Errorf("middleware basic-auth: %v: %w", err, ErrInvalid)
		}
		if err := checkPhrase("basic-auth realm", b.Realm); err != nil {
			return err
		}
		a := &authRule{realm: b.Realm, file: b.File}
		if b.File == "" {
			a.file = filepath.Join(r.p.Prefix, "auth", upstreamName(s)+".htpasswd")
			var c strings.Builder
			for _, u := range b.Hashes {
				c.WriteString(u.User + ":" + u.Hash + "\n")
			}
			a.content = []byte(c.String())
		}
		if err := checkPath("basic-auth htpasswd", a.file); err != nil {
			return err
		}
		s.acc.auth = a
	case "local":
		if s.acc.local != nil {
			return fmt.Errorf("middleware local: one per stanza: %w", ErrInvalid)
		}
		l, err := m.Local()
		if err != nil {
			return fmt.Errorf("middleware local: %v: %w", err, ErrInvalid)
		}
		if err := checkPhrase("local message", l.Message); err != nil {
			return err
		}
		s.acc.local = l
	case "rate-limiter":
		rl, err := m.RateLimiter()
		if err != nil {
			return fmt.Errorf("middleware rate-limiter: %v: %w", err, ErrUnsupported)
		}
		var errs []error
		for _, t := range rl.Throttles {
			rate, err := limitRate(t.Limit, t.Period)
			if err != nil {
				errs = append(errs, fmt.Errorf("middleware rate-limiter throttle %q: %v: %w", t.Name, err, ErrUnsupported))
				continue
			}
			zone := upstreamName(s) + "_rl" + strconv.Itoa(len(s.acc.limits))
			s.acc.limits = append(s.acc.limits, limit{zone: zone, rate: rate, burst: t.Limit - 1})
		}
		return errors.Join(errs...)
	}
	return nil
}

// limitRate is Limit per Period seconds in nginx's units: requests a
// second, else a minute (rounded to the nearest; nginx keeps rates in
// thousandths of a request a second anyway).
func limitRate(limit, period int) (string, error) {
	if limit%period == 0 {
		return strconv.Itoa(limit/period) + "r/s", nil
	}
	perMin := (int64(limit)*60 + int64(period)/2) / int64(period)
	if perMin < 1 {
		return "", fmt.Errorf("%d per %d s is slower than nginx's slowest rate, 1 request a minute", limit, period)
	}
	return strconv.FormatInt(perMin, 10) + "r/m", nil
}

// checkPhrase is checkText for a quoted value that may hold spaces (a
// realm, a message).
func checkPhrase(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty: %w", what, ErrInvalid)
	}
	for _, c := range s {
		if c < 0x20 || c > 0x7e || strings.ContainsRune(forbidden, c) {
			return fmt.Errorf("%s %q: character %q is not allowed: %w", what, s, c, ErrInvalid)
		}
	}
	return nil
}

// accessHTTP renders the http-level part: the zones of every throttle
// (so adding or removing a limit is a config change like any other) and
// the loopback test of local.
func (r *renderer) accessHTTP(w *writer) {
	local := false
	for _, s := range r.sites {
		local = local || s.acc.local != nil
		for _, l := range s.acc.limits {
			w.line("limit_req_zone", "$binary_remote_addr", "zone="+l.zone+":"+LimitZoneSize, "rate="+l.rate)
		}
	}
	if local {
		// Keter's local lets the host itself through (wai's: 127.0.0.1);
		// ::1 is the host too.
		w.open("geo", localVar)
		w.line("default", "0")
		w.line("127.0.0.1", "1")
		w.line("::1", "1")
		w.close()
	}
}

// accessRules renders a site's rules inside one of its locations, after
// the maintenance gate: a page in maintenance is shown to everyone.
func (r *renderer) accessRules(w *writer, s *site) {
	a := s.acc
	if a.local != nil {
		w.open("if", "("+localVar, "=", "0)")
		w.line("return", strconv.Itoa(a.local.Status), q(a.local.Message))
		w.close()
	}
	for _, p := range a.deny {
		w.line("deny", p.String())
	}
	for _, p := range a.allow {
		w.line("allow", p.String())
	}
	if len(a.allow) > 0 {
		w.line("deny", "all")
	}
	for _, l := range a.limits {
		args := []string{"limit_req", "zone=" + l.zone}
		if l.burst > 0 {
			args = append(args, "burst="+strconv.Itoa(l.burst))
		}
		w.line(append(args, "nodelay")...)
	}
	if len(a.limits) > 0 {
		w.line("limit_req_status", "429")
		// One line per refused request would flood the journal under
		// the very load the limit is for.
		w.line("limit_req_log_level", "info")
	}
	if a.auth != nil {
		w.line("auth_basic", q(a.auth.realm))
		w.line("auth_basic_user_file", q(a.auth.file))
	}
}

// authFiles are keter's user files the config names: path → content.
func (r *model) authFiles() map[string][]byte {
	out := map[string][]byte{}
	for _, s := range r.sites {
		if a := s.acc.auth; a != nil && a.content != nil {
			out[a.file] = a.content
		}
	}
	return out
}

// sortedKeys lists a file map's paths in order.
func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
