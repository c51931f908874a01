package nginx

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/keter-systemd/keter/bundle"
)

// This file renders a stanza's own limits (bundle.Front): its body size,
// the time nginx waits to connect to the app, response buffering, and
// the front door's compression.

// checkFront validates what a stanza's front settings put in the config,
// again: the bundle parser is not the only way a model is made.
func checkFront(f bundle.Front) error {
	var errs []error
	if f.MaxBodySize != "" && !sizeRE.MatchString(f.MaxBodySize) {
		errs = append(errs, fmt.Errorf("max-body-size %q: must be a number with an optional k, m or g, such as 10m: %w", f.MaxBodySize, ErrInvalid))
	}
	if f.ConnectTimeout < 0 || f.ConnectTimeout > bundle.MaxConnectTimeout {
		errs = append(errs, fmt.Errorf("connect-timeout %s: must be more than 0s and at most %s: %w", f.ConnectTimeout, bundle.MaxConnectTimeout, ErrInvalid))
	}
	if f.ConnectTimeout > 0 && f.ConnectTimeout.Milliseconds() == 0 {
		errs = append(errs, fmt.Errorf("connect-timeout %s: must be at least 1ms: %w", f.ConnectTimeout, ErrInvalid))
	}
	return errors.Join(errs...)
}

// limits, inside a site's location, override the server's defaults for
// the stanza: a location's client_max_body_size wins over the server's.
func (r *renderer) limits(w *writer, s *site) {
	f := s.stanza.Front
	if f.MaxBodySize != "" {
		w.line("client_max_body_size", f.MaxBodySize)
	}
	if s.stanza.StaticFiles != nil {
		return
	}
	if f.ConnectTimeout > 0 {
		w.line("proxy_connect_timeout", strconv.FormatInt(f.ConnectTimeout.Milliseconds(), 10)+"ms")
	}
	if f.NoBuffering {
		w.line("proxy_buffering", "off")
	}
}

// gzipTypes are compressed besides text/html (which nginx always
// compresses when gzip is on): text formats only; images, archives,
// fonts and video are compressed already.
var gzipTypes = []string{
	"text/plain", "text/css", "text/javascript", "text/xml", "text/csv", "text/markdown",
	"application/javascript", "application/json", "application/ld+json", "application/manifest+json",
	"application/xml", "application/rss+xml", "application/atom+xml", "application/xhtml+xml",
	"image/svg+xml",
}

// Gzip settings of the front door; bench/ renders a plain nginx with the
// same ones for its comparison.
const (
	GzipLevel     = "5"    // most of level 9's gain for a fraction of its CPU
	GzipMinLength = "1024" // a smaller body barely shrinks, and costs a frame
)

// gzip compresses a site's text responses (a stanza's gzip: false turns
// it off, also over a system nginx's http-level gzip on). A response the
// app compressed itself is passed as it is.
func (r *renderer) gzip(w *writer, s *site) {
	if s.stanza.Redirect != nil {
		return
	}
	if s.stanza.Front.NoGzip {
		w.line("gzip", "off")
		return
	}
	GzipDirectives(w.line)
}

// GzipDirectives writes the front door's gzip settings through line, for
// keter's config and for bench's plain nginx alike.
func GzipDirectives(line func(parts ...string)) {
	line("gzip", "on")
	line("gzip_comp_level", GzipLevel)
	line("gzip_min_length", GzipMinLength)
	// Behind a proxy (a Via header) too; Vary tells caches it depends.
	line("gzip_proxied", "any")
	line("gzip_vary", "on")
	line(append([]string{"gzip_types"}, gzipTypes...)...)
}
