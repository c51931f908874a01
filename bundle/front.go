package bundle

import (
	"strings"
	"time"
)

// Front holds a stanza's front-door settings (ours; Keter 2.3 has none of
// these keys): limits, response buffering and compression. Zero values
// mean the global defaults.
type Front struct {
	// MaxBodySize is nginx's client_max_body_size for the stanza's hosts
	// ("10m", "512k", "0" for no limit); "" means the global
	// nginx.client-max-body-size.
	MaxBodySize string `json:"max-body-size,omitempty"`
	// ConnectTimeout bounds connecting to the app (nginx's
	// proxy_connect_timeout); 0 means nginx's default, 60s.
	ConnectTimeout time.Duration `json:"connect-timeout,omitempty"`
	// NoBuffering turns response buffering off (response-buffering:
	// false): each chunk the app writes goes to the client at once.
	NoBuffering bool `json:"no-buffering,omitempty"`
	// NoGzip turns the front door's compression off (gzip: false).
	NoGzip bool `json:"no-gzip,omitempty"`
}

// MaxConnectTimeout is nginx's own ceiling for proxy_connect_timeout.
const MaxConnectTimeout = 75 * time.Second

// ErrorPages are the pages a bundle may ship, relative to its root: nginx
// answers its hosts with config/errors/CODE.html when it cannot get an
// answer from the app itself (502: down or restarting; 504: too slow;
// 503: nginx answers 503 itself).
var ErrorPages = map[int]string{
	502: "config/errors/502.html",
	503: "config/errors/503.html",
	504: "config/errors/504.html",
}

// MaxErrorPage bounds an error page keter copies out of a bundle.
const MaxErrorPage = 256 << 10

// front reads the front-door keys of a stanza of type t; they are refused
// on stanzas that serve nothing through nginx or where they mean nothing.
func (o *obj) front(t StanzaType) Front {
	var f Front
	allowed := map[string]bool{}
	switch t {
	case TypeWebApp, TypeReverseProxy:
		allowed = map[string]bool{"max-body-size": true, "connect-timeout": true, "response-buffering": true, "gzip": true}
	case TypeStaticFiles:
		allowed = map[string]bool{"max-body-size": true, "gzip": true}
	}
	for _, k := range []string{"max-body-size", "connect-timeout", "response-buffering", "gzip"} {
		if o.vals[k] != nil && !allowed[k] {
			o.get(k)
			o.w.failf(join(o.path, k), "not for %s stanzas", t)
		}
	}
	if allowed["max-body-size"] {
		if n := o.get("max-body-size"); n != nil {
			v, ok := o.str("max-body-size")
			if ok {
				if err := ValidBodySize(v); err != nil {
					o.w.fail(join(o.path, "max-body-size"), err)
				} else {
					f.MaxBodySize = strings.ToLower(v)
				}
			}
		}
	}
	if allowed["connect-timeout"] {
		if d, ok := o.duration("connect-timeout", MaxConnectTimeout); ok && d < time.Millisecond {
			o.w.failf(join(o.path, "connect-timeout"), "must be at least 1ms, found %s", d)
		} else {
			f.ConnectTimeout = d
		}
	}
	if allowed["response-buffering"] {
		f.NoBuffering = !o.boolean("response-buffering", true)
	}
	if allowed["gzip"] {
		f.NoGzip = !o.boolean("gzip", true)
	}
	return f
}

// ValidBodySize checks a body size as nginx writes it: digits with an
// optional k, m or g (KiB, MiB, GiB); a bare number is bytes, 0 is no limit.
func ValidBodySize(s string) error {
	t := s
	if t != "" && strings.ContainsRune("kKmMgG", rune(t[len(t)-1])) {
		t = t[:len(t)-1]
	}
	ok := t != "" && len(t) <= 9
	for i := 0; i < len(t); i++ {
		ok = ok && t[i] >= '0' && t[i] <= '9'
	}
	if !ok {
		return invalid("size %s must be a whole number of bytes with an optional k, m or g suffix (KiB, MiB, GiB), such as 10m or 512k; 0 means no limit", describe(s))
	}
	return nil
}
