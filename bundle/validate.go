package bundle

import (
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// ErrInvalid marks a value that keter refuses because it is malformed or
// could inject syntax into the nginx config.
var ErrInvalid = errors.New("invalid value")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}

// describe quotes a value for an error message without letting control
// characters through to logs.
func describe(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strconv.Quote(s)
}

// ValidHost checks a host name as written in keter.yaml: DNS-style labels
// of [a-z0-9_-] (upper case is accepted; Keter matches case-insensitively,
// callers lower-case), or a wildcard `*.example.com` matching one label.
// Anything else (quotes, braces, `;`, `$`, whitespace, `#`, `/`, `:`, a
// trailing dot, empty labels) is refused, since hosts end up in nginx's
// server_name. Underscores are allowed because Keter's own samples use
// them (`keter1_0`).
func ValidHost(h string) error {
	if h == "" {
		return invalid("empty host name")
	}
	if len(h) > 253 {
		return invalid("host name %s is longer than 253 characters", describe(h))
	}
	rest := h
	if strings.HasPrefix(h, "*.") {
		rest = h[2:]
	}
	labels := strings.Split(rest, ".")
	for _, l := range labels {
		if l == "" {
			return invalid("host name %s has an empty label (leading, trailing or double dot)", describe(h))
		}
		if len(l) > 63 {
			return invalid("host name %s has a label longer than 63 characters", describe(h))
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
			case c == '-':
				if i == 0 || i == len(l)-1 {
					return invalid("host name %s has a label starting or ending with '-'", describe(h))
				}
			case c == '*':
				return invalid("host name %s: '*' is only allowed as the whole first label (*.example.com)", describe(h))
			default:
				return invalid("host name %s contains %s; only letters, digits, '-', '_', '.' and a leading '*.' are allowed", describe(h), describe(string(rune(c))))
			}
		}
	}
	if strings.EqualFold(labels[len(labels)-1], "invalid") {
		return invalid("host name %s: the .invalid domain can never be a real site (RFC 6761); keter uses it for itself", describe(h))
	}
	return nil
}

// normHost validates and lower-cases a host.
func normHost(h string) (string, error) {
	if err := ValidHost(h); err != nil {
		return "", err
	}
	return strings.ToLower(h), nil
}

// validPlainHost is ValidHost without wildcards, or an IPv4 address.
func validPlainHost(h string) error {
	if strings.HasPrefix(h, "*") {
		return invalid("host %s must not be a wildcard here", describe(h))
	}
	return ValidHost(h)
}

// safe URL characters: RFC 3986 unreserved, '%' for escapes, and the
// delimiters a URL needs; no quotes, braces, '$', ';', '#', '\' or spaces.
func urlChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-._~%/:?&=+,@!*", c) >= 0
}

// pathChar is urlChar without '?' (a path holds no query) and ':'/'@'
// kept (valid in paths).
func pathChar(c byte) bool { return c != '?' && urlChar(c) }

// ValidPath checks an HTTP path that will reach nginx: it starts with '/'
// and holds only safe URL path characters.
func ValidPath(p string) error {
	if p == "" || p[0] != '/' {
		return invalid("path %s must start with '/'", describe(p))
	}
	if len(p) > 1024 {
		return invalid("path %s is longer than 1024 characters", describe(p))
	}
	for i := 0; i < len(p); i++ {
		if !pathChar(p[i]) {
			return invalid("path %s contains %s; use %%-escapes", describe(p), describe(string(rune(p[i]))))
		}
	}
	return nil
}

// ValidURL checks an absolute http(s) redirect target that will reach
// nginx: safe characters only, a valid host, an optional port.
func ValidURL(s string) error {
	if len(s) > 2048 {
		return invalid("URL %s is longer than 2048 characters", describe(s))
	}
	for i := 0; i < len(s); i++ {
		if !urlChar(s[i]) {
			return invalid("URL %s contains %s; use %%-escapes", describe(s), describe(string(rune(s[i]))))
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return invalid("URL %s: %v", describe(s), err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return invalid("URL %s must start with http:// or https://", describe(s))
	}
	if u.User != nil {
		return invalid("URL %s must not hold user information", describe(s))
	}
	if err := validPlainHost(u.Hostname()); err != nil {
		return invalid("URL %s: bad host: %v", describe(s), errors.Unwrap(err))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return invalid("URL %s has a bad port", describe(s))
		}
	}
	return nil
}

// ValidHeaderName checks an HTTP header name that will reach nginx:
// letters, digits and '-' only.
func ValidHeaderName(h string) error {
	if h == "" {
		return invalid("empty header name")
	}
	if len(h) > 128 {
		return invalid("header name %s is longer than 128 characters", describe(h))
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			return invalid("header name %s contains %s; only letters, digits and '-' are allowed", describe(h), describe(string(rune(c))))
		}
	}
	return nil
}

// validText checks free text that nginx will print inside a quoted string
// (header values, realms, rewrite replacements): printable ASCII without
// quotes, backslash-quote tricks, '$' (nginx variables), ';', braces or
// '#'. allowBackslash permits \1 references.
func validText(s, what string, allowBackslash bool) error {
	if len(s) > 4096 {
		return invalid("%s is longer than 4096 characters", what)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return invalid("%s %s contains a control or non-ASCII character", what, describe(s))
		}
		if strings.IndexByte("\"'`$;{}#", c) >= 0 || (c == '\\' && !allowBackslash) {
			return invalid("%s %s contains %s", what, describe(s), describe(string(rune(c))))
		}
	}
	return nil
}

// validRegex checks a rewrite `from` pattern: it must compile, be
// printable ASCII without quotes, ';' or '#', and may only use '$' as an
// end anchor (not as an nginx variable). Braces are allowed for
// repetition; the renderer quotes the pattern.
func validRegex(s string) error {
	if s == "" {
		return invalid("empty regular expression")
	}
	if len(s) > 1024 {
		return invalid("regular expression is longer than 1024 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e {
			return invalid("regular expression %s contains a control or non-ASCII character", describe(s))
		}
		if strings.IndexByte("\"'`;#", c) >= 0 {
			return invalid("regular expression %s contains %s", describe(s), describe(string(rune(c))))
		}
		if c == '$' && i+1 < len(s) && s[i+1] != ')' && s[i+1] != '|' {
			return invalid("regular expression %s: '$' is only allowed as an end anchor", describe(s))
		}
	}
	if _, err := regexp.Compile(s); err != nil {
		return invalid("regular expression %s: %v", describe(s), err)
	}
	return nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// validEnvName checks an environment variable name.
func validEnvName(n string) error {
	if !envName.MatchString(n) || len(n) > 256 {
		return invalid("environment variable name %s must match [A-Za-z_][A-Za-z0-9_]*", describe(n))
	}
	return nil
}

// ValidAppName checks an app name: [A-Za-z0-9._-], not starting with '.'
// or '-', at most 128 bytes.
func ValidAppName(n string) error {
	if n == "" {
		return invalid("empty app name")
	}
	if len(n) > 128 {
		return invalid("app name %s is longer than 128 characters", describe(n))
	}
	if n[0] == '.' || n[0] == '-' {
		return invalid("app name %s must not start with '.' or '-'", describe(n))
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("app name %s contains %s; only letters, digits, '.', '_' and '-' are allowed", describe(n), describe(string(rune(c))))
		}
	}
	return nil
}
