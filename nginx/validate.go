package nginx

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/bundle"
)

var (
	// ErrInvalid marks a value that cannot safely reach nginx's config.
	ErrInvalid = errors.New("invalid value")
	// ErrUnsupported marks a Keter feature nginx cannot express.
	ErrUnsupported = errors.New("not supported by the nginx front door")
	// ErrDuplicateHost marks a host claimed by two apps or stanzas.
	ErrDuplicateHost = errors.New("duplicate host")
)

// forbidden are the characters that could end a quoted string, start a
// variable, a block, a directive end or a comment in nginx's grammar.
const forbidden = "\"'\\${};#`"

// checkText refuses control characters, spaces and nginx's special
// characters. Every bundle value except rewrite regexes passes through it.
func checkText(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s: empty: %w", what, ErrInvalid)
	}
	for _, r := range s {
		if r < 0x21 || r == 0x7f || strings.ContainsRune(forbidden, r) {
			return fmt.Errorf("%s %q: character %q is not allowed: %w", what, s, r, ErrInvalid)
		}
	}
	return nil
}

// q quotes a value that passed checkText (or a value we built ourselves).
func q(s string) string { return `"` + s + `"` }

// qRegex quotes a regex for nginx: backslashes double because nginx's
// tokenizer unescapes \\ inside quotes.
func qRegex(s string) string {
	return `"` + strings.ReplaceAll(s, `\`, `\\`) + `"`
}

// Underscores are allowed as bundle.ValidHost allows them (Keter's
// samples use them).
var labelRE = regexp.MustCompile(`^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$`)

// validHost accepts a lower-case DNS name, optionally starting with "*."
// (one label of wildcard, as Keter's LabelMap does). It runs after
// bundle.ValidHost as a second, stricter check of its own.
func validHost(h string) error {
	if err := bundle.ValidHost(h); err != nil {
		return fmt.Errorf("host %q: %v: %w", h, err, ErrInvalid)
	}
	name := strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host %q: must be 1 to 253 characters: %w", h, ErrInvalid)
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if !labelRE.MatchString(l) {
			return fmt.Errorf("host %q: label %q is not a lower-case DNS label: %w", h, l, ErrInvalid)
		}
	}
	if name != h && len(labels) < 2 {
		return fmt.Errorf("host %q: a wildcard needs at least two labels after \"*.\": %w", h, ErrInvalid)
	}
	return nil
}

// serverName turns a Keter host into an nginx server_name argument. A
// wildcard matches exactly one label, as in Keter, so it becomes a regex
// (nginx's own "*.x" would match any depth).
func serverName(h string) string {
	if rest, ok := strings.CutPrefix(h, "*."); ok {
		return qRegex(`~^[^.]+\.` + strings.ReplaceAll(rest, ".", `\.`) + `$`)
	}
	return q(h)
}

// checkPath checks an absolute file-system path.
func checkPath(what, p string) error {
	if err := checkText(what, p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%s %q: must be absolute: %w", what, p, ErrInvalid)
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return fmt.Errorf("%s %q: must not contain \"..\": %w", what, p, ErrInvalid)
		}
	}
	return nil
}

// checkURLPath checks a request path as used in redirect actions and the
// health check path.
func checkURLPath(what, p string) error {
	if err := checkText(what, p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%s %q: must start with /: %w", what, p, ErrInvalid)
	}
	if strings.ContainsAny(p, "?") {
		return fmt.Errorf("%s %q: must not contain a query: %w", what, p, ErrInvalid)
	}
	return nil
}

// checkURL checks an absolute http(s) redirect target.
func checkURL(what, s string) error {
	if err := checkText(what, s); err != nil {
		return err
	}
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%s %q: %v: %w", what, s, err, ErrInvalid)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%s %q: must be an absolute http or https URL: %w", what, s, ErrInvalid)
	}
	return nil
}

// checkUpstreamHost checks a reverse-proxy target: a DNS name or an IP.
func checkUpstreamHost(h string) error {
	if ip := net.ParseIP(h); ip != nil {
		return nil
	}
	if err := validHost(strings.ToLower(h)); err != nil || strings.HasPrefix(h, "*") {
		return fmt.Errorf("reversed-host %q: must be a DNS name or IP address: %w", h, ErrInvalid)
	}
	return nil
}

// hostPort formats a host and port for listen/server/proxy_pass.
func hostPort(h string, port int) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + strconv.Itoa(port)
	}
	return h + ":" + strconv.Itoa(port)
}

var headerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9-]{0,63}$`)

func checkHeaderName(what, h string) error {
	if !headerNameRE.MatchString(h) {
		return fmt.Errorf("%s %q: must be letters, digits and dashes: %w", what, h, ErrInvalid)
	}
	return nil
}

// checkHeaderValue allows spaces inside (header values often have them)
// but nothing else checkText refuses.
func checkHeaderValue(what, v string) error {
	for _, part := range strings.Split(v, " ") {
		if part == "" {
			continue
		}
		if err := checkText(what, part); err != nil {
			return fmt.Errorf("%s %q: %w", what, v, errors.Unwrap(err))
		}
	}
	if strings.TrimSpace(v) == "" {
		return fmt.Errorf("%s: empty: %w", what, ErrInvalid)
	}
	return nil
}

// varName is the nginx variable suffix for a header name.
func varName(h string) string {
	return strings.ReplaceAll(strings.ToLower(h), "-", "_")
}

const maxRewriteGroups = 5

// checkRegex checks a rewrite rule's regex: it must compile, hold no
// control characters or quotes, and leave room for our two extra groups in
// nginx's nine positional captures.
func checkRegex(what, re string) (groups int, err error) {
	if re == "" {
		return 0, fmt.Errorf("%s: empty regex: %w", what, ErrInvalid)
	}
	for _, r := range re {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\'' {
			return 0, fmt.Errorf("%s %q: character %q is not allowed: %w", what, re, r, ErrInvalid)
		}
	}
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return 0, fmt.Errorf("%s %q: %v: %w", what, re, err, ErrInvalid)
	}
	n := parsed.MaxCap()
	if n > maxRewriteGroups {
		return 0, fmt.Errorf("%s %q: more than %d groups: %w", what, re, maxRewriteGroups, ErrUnsupported)
	}
	return n, nil
}

// rewriteTo converts Keter's replacement (\N group references, \\ for a
// backslash) into nginx's ($N), shifting groups by the one our wrapper
// regex adds in front. Literal text obeys checkHeaderValue's rules.
func rewriteTo(what, to string, groups int) (string, error) {
	var b strings.Builder
	var lit strings.Builder
	flush := func() error {
		if lit.Len() > 0 {
			if err := checkHeaderValue(what, lit.String()); err != nil {
				return err
			}
			b.WriteString(lit.String())
			lit.Reset()
		}
		return nil
	}
	for i := 0; i < len(to); i++ {
		if to[i] != '\\' {
			lit.WriteByte(to[i])
			continue
		}
		if i+1 < len(to) && to[i+1] >= '0' && to[i+1] <= '9' {
			n := int(to[i+1] - '0')
			if n > groups {
				return "", fmt.Errorf("%s %q: \\%d refers to a missing group: %w", what, to, n, ErrInvalid)
			}
			if err := flush(); err != nil {
				return "", err
			}
			// group 0 is the whole match, our group 2; group N is N+2.
			b.WriteString("$" + strconv.Itoa(n+2))
			i++
			continue
		}
		return "", fmt.Errorf("%s %q: only \\0-\\9 references are supported: %w", what, to, ErrUnsupported)
	}
	if err := flush(); err != nil {
		return "", err
	}
	return b.String(), nil
}

var sizeRE = regexp.MustCompile(`^[0-9]{1,9}[kKmMgG]?$`)
