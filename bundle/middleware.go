package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/crypto/bcrypt"
	"gopkg.in/yaml.v3"
)

// This file holds the access rules of a stanza: Keter's basic-auth,
// local and rate-limiter middleware items as typed values, and our
// allow-from / deny-from address lists. The nginx package renders them.

// Access is our per-stanza address rule, on webapp, static-files and
// reverse-proxy stanzas: addresses or CIDR ranges, canonical as net/netip
// prints them. DenyFrom wins; a non-empty AllowFrom denies everyone else.
type Access struct {
	AllowFrom []string `json:"allow-from,omitempty"`
	DenyFrom  []string `json:"deny-from,omitempty"`
}

// access reads allow-from and deny-from.
func (o *obj) access() Access {
	return Access{AllowFrom: o.prefixes("allow-from"), DenyFrom: o.prefixes("deny-from")}
}

func (o *obj) prefixes(key string) []string {
	var out []string
	for i, s := range o.strList(key) {
		p, err := ParsePrefix(s)
		if err != nil {
			o.w.fail(index(join(o.path, key), i), err)
			continue
		}
		out = append(out, p.String())
	}
	return out
}

// ParsePrefix reads an address (a range of one) or a CIDR range strictly
// (net/netip: no zones, no host bits set beyond the prefix).
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, invalid("%s is not an address or CIDR range", describe(s))
		}
		if p != p.Masked() {
			return netip.Prefix{}, invalid("%s has bits set past the prefix length; write %s", describe(s), p.Masked())
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, invalid("%s is not an address or CIDR range", describe(s))
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// BasicAuth is a basic-auth item: Keter's realm (default "keter") and
// creds, which LoadWithWarnings turns into Hashes before anything else
// sees them; our hashed-creds (user: crypt hash) and htpasswd (an
// absolute path to the operator's own file) are additions Keter ignores.
type BasicAuth struct {
	Realm  string
	Hashes []Credential // sorted by user
	File   string
}

// Credential is one user and the crypt(3) hash of their password.
type Credential struct{ User, Hash string }

// DefaultRealm is Keter's realm when none is given.
const DefaultRealm = "keter"

// hashRE are the crypt(3) forms nginx's auth_basic_user_file checks on
// Debian 12 (libxcrypt, and nginx's own $apr1$, {SHA}, {SSHA}): only the
// characters of the crypt alphabet and base64, so a hash can never break
// the file's user:hash lines. {PLAIN} is refused.
var hashRE = regexp.MustCompile(`^(?:` +
	`\$2[aby]\$(0[4-9]|[12][0-9]|3[01])\$[./A-Za-z0-9]{53}` + // bcrypt
	`|\$[56]\$(rounds=[1-9][0-9]{3,8}\$)?[./A-Za-z0-9]{1,16}\$[./A-Za-z0-9]{43}([./A-Za-z0-9]{43})?` + // SHA-256/512 crypt
	`|\$(1|apr1)\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}` + // MD5 crypt, Apache's
	`|\$y\$[./A-Za-z0-9]{1,32}\$[./A-Za-z0-9]{1,86}\$[./A-Za-z0-9]{43}` + // yescrypt
	`|\{SSHA\}[A-Za-z0-9+/]{28,}={0,2}|\{SHA\}[A-Za-z0-9+/]{27}=` +
	`)$`)

// ValidHash checks a password hash as it will stand in an htpasswd line.
func ValidHash(h string) error {
	if !hashRE.MatchString(h) {
		return invalid("not a password hash nginx checks (bcrypt $2y$, SHA-512 crypt $6$, SHA-256 crypt $5$, yescrypt $y$, $apr1$, $1$, {SSHA} or {SHA})")
	}
	return nil
}

// validUser checks an htpasswd user name: printable ASCII without ':'.
func validUser(u string) error {
	if u == "" || len(u) > 256 || strings.ContainsAny(u, ":") || validText(u, "user", false) != nil {
		return invalid("user names must be printable ASCII without ':', quotes, '$', ';', braces or '#'")
	}
	return nil
}

// BasicAuth reads a basic-auth item. Plain creds are an error here: they
// are hashed when the bundle is loaded (LoadWithWarnings).
func (m Middleware) BasicAuth() (*BasicAuth, error) { return m.basicAuth(0) }

// basicAuth is BasicAuth where plain users are creds still to be hashed.
func (m Middleware) basicAuth(plain int) (*BasicAuth, error) {
	b := &BasicAuth{Realm: DefaultRealm}
	var errs []error
	if v, ok := m.Config["realm"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			errs = append(errs, keyed("realm", invalid("must be a string")))
		} else if err := validText(s, "realm", false); err != nil {
			errs = append(errs, keyed("realm", err))
		} else if s != "" {
			b.Realm = s
		}
	}
	if c, _ := m.Config["creds"].(map[string]any); len(c) > 0 && plain == 0 {
		errs = append(errs, keyed("creds", invalid("still plain text: keter hashes them when it loads the bundle")))
	}
	if v, ok := m.Config["hashed-creds"]; ok && v != nil {
		hs, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, keyed("hashed-creds", invalid("must be a mapping of user: hash")))
		}
		for u, h := range hs {
			s, _ := h.(string)
			if err := validUser(u); err != nil {
				errs = append(errs, keyed("hashed-creds."+u, err))
				continue
			}
			if err := ValidHash(s); err != nil {
				errs = append(errs, keyed("hashed-creds."+u, err))
				continue
			}
			b.Hashes = append(b.Hashes, Credential{u, s})
		}
	}
	sort.Slice(b.Hashes, func(i, j int) bool { return b.Hashes[i].User < b.Hashes[j].User })
	if v, ok := m.Config["htpasswd"]; ok && v != nil {
		s, _ := v.(string)
		if err := validHostFile(s); err != nil {
			errs = append(errs, keyed("htpasswd", err))
		}
		b.File = s
	}
	switch users := len(b.Hashes) + plain; {
	case b.File != "" && users > 0:
		errs = append(errs, keyed("htpasswd", invalid("htpasswd and creds are exclusive: nginx reads one user file per site")))
	case b.File == "" && users == 0:
		errs = append(errs, keyed("creds", invalid("required: a mapping of user: password (or hashed-creds, or htpasswd)")))
	}
	return b, errors.Join(errs...)
}

// validHostFile checks an absolute path on the host that will stand in
// nginx's config.
func validHostFile(p string) error {
	if !strings.HasPrefix(p, "/") || len(p) > 1024 {
		return invalid("%s must be an absolute path", describe(p))
	}
	for i := 0; i < len(p); i++ {
		c := p[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("/._-+@", c) >= 0
		if !ok {
			return invalid("path %s contains %s; only letters, digits and / . _ - + @ are allowed", describe(p), describe(string(rune(c))))
		}
	}
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." || seg == "." {
			return invalid("path %s must be clean (no . or ..)", describe(p))
		}
	}
	return nil
}

// Local is Keter's local item: clients other than the host itself get
// Status and Message.
type Local struct {
	Status  int
	Message string
}

// Keter's defaults for local.
const (
	DefaultLocalStatus  = 401
	DefaultLocalMessage = "Unauthorized Accessing from Localhost ONLY"
)

// Local reads a local item.
func (m Middleware) Local() (*Local, error) {
	l := &Local{Status: DefaultLocalStatus, Message: DefaultLocalMessage}
	var errs []error
	if v, ok := m.Config["status"]; ok && v != nil {
		n, ok := v.(int)
		if !ok || n < 200 || n > 599 {
			errs = append(errs, keyed("status", invalid("must be an HTTP status between 200 and 599")))
		}
		l.Status = n
	}
	if v, ok := m.Config["message"]; ok && v != nil {
		s, ok := v.(string)
		if !ok {
			errs = append(errs, keyed("message", invalid("must be a string")))
		} else if err := validText(s, "message", false); err != nil {
			errs = append(errs, keyed("message", err))
		}
		l.Message = s
	}
	return l, errors.Join(errs...)
}

// RateLimit is Keter 2.3's rate-limiter item (keter-rate-limiting-plugin)
// as nginx's limit_req can honour it: throttles counted per client
// address (identifier_by: ip), zone_by default or ip (which for a per-IP
// count are the same).
type RateLimit struct {
	Throttles []Throttle
}

// Throttle is one of rate-limiter's throttles: Limit requests per Period
// seconds per client address.
type Throttle struct {
	Name      string
	Limit     int
	Period    int
	Algorithm string
}

var algorithms = map[string]bool{"FixedWindow": true, "SlidingWindow": true, "TokenBucket": true, "LeakyBucket": true}

// RateLimiter reads a rate-limiter item.
func (m Middleware) RateLimiter() (*RateLimit, error) {
	rl := &RateLimit{}
	var errs []error
	switch z := m.Config["zone_by"].(type) {
	case nil:
	case string:
		if z != "default" && z != "ip" {
			errs = append(errs, keyed("zone_by", invalid("must be default or ip, found %s", describe(z))))
		}
	default:
		errs = append(errs, keyed("zone_by", invalid("zones by header are not supported by keter's nginx front: use default or ip")))
	}
	ths, ok := m.Config["throttles"].([]any)
	if !ok || len(ths) == 0 {
		return rl, errors.Join(append(errs, keyed("throttles", invalid("required, a list of {name, limit, period, algorithm, identifier_by}")))...)
	}
	for i, v := range ths {
		t, ok := v.(map[string]any)
		if !ok {
			errs = append(errs, keyed(index("throttles", i), invalid("must be a mapping")))
			continue
		}
		var th Throttle
		var terrs []error
		th.Name, _ = t["name"].(string)
		if th.Name == "" || validText(th.Name, "name", false) != nil {
			terrs = append(terrs, invalid("name: required, printable text"))
		}
		for _, f := range []struct {
			key string
			to  *int
		}{{"limit", &th.Limit}, {"period", &th.Period}} {
			n, ok := t[f.key].(int)
			if !ok || n < 1 || n > 1_000_000_000 {
				terrs = append(terrs, invalid("%s: required, a whole number from 1", f.key))
			}
			*f.to = n
		}
		th.Algorithm, _ = t["algorithm"].(string)
		if !algorithms[th.Algorithm] {
			terrs = append(terrs, invalid("algorithm: one of FixedWindow, SlidingWindow, TokenBucket, LeakyBucket"))
		}
		if id, _ := t["identifier_by"].(string); id != "ip" {
			terrs = append(terrs, invalid("identifier_by: keter's nginx front counts per client address only (ip)"))
		}
		if ttl, ok := t["token_bucket_ttl"]; ok && ttl != nil {
			if _, ok := ttl.(int); !ok {
				terrs = append(terrs, invalid("token_bucket_ttl must be a whole number of seconds"))
			}
		}
		for k := range t {
			switch k {
			case "name", "limit", "period", "algorithm", "identifier_by", "token_bucket_ttl":
			default:
				terrs = append(terrs, invalid("unknown key %s", describe(k)))
			}
		}
		if len(terrs) > 0 {
			for _, e := range terrs {
				errs = append(errs, keyed(index("throttles", i), e))
			}
			continue
		}
		rl.Throttles = append(rl.Throttles, th)
	}
	return rl, errors.Join(errs...)
}

// validAccessMiddleware checks basic-auth, local and rate-limiter items
// at parse time (plain creds are checked here, hashed at load).
func validAccessMiddleware(w *walker, p string, m Middleware) {
	switch m.Name {
	case "basic-auth":
		for k := range m.Config {
			switch k {
			case "realm", "creds", "hashed-creds", "htpasswd":
			default:
				w.warn(join(p, k), "unknown key ignored")
			}
		}
		plain := 0
		if v, present := m.Config["creds"]; present {
			creds, ok := v.(map[string]any)
			if !ok {
				w.failf(join(p, "creds"), "must be a mapping of user: password")
			}
			users := make([]string, 0, len(creds))
			for u := range creds {
				users = append(users, u)
			}
			sort.Strings(users)
			for _, u := range users {
				up := join(join(p, "creds"), u)
				if err := validUser(u); err != nil {
					w.fail(up, err)
				}
				if hs, _ := m.Config["hashed-creds"].(map[string]any); hs[u] != nil {
					w.failf(up, "user is also in hashed-creds")
				}
				// Never put the password in a message.
				switch pw := creds[u].(type) {
				case string:
					if strings.ContainsAny(pw, "\n\r\x00") {
						w.failf(up, "password must not contain line breaks or NUL")
					} else if len(pw) > 72 {
						w.failf(up, "password is longer than 72 bytes, bcrypt's limit")
					}
				case nil, map[string]any, []any:
					w.failf(up, "password must be a string")
				default:
					creds[u] = fmt.Sprint(pw)
				}
			}
			plain = len(creds)
		}
		if _, err := m.basicAuth(plain); err != nil {
			failKeyed(w, p, err)
		}
	case "local":
		for k := range m.Config {
			if k != "status" && k != "message" {
				w.warn(join(p, k), "unknown key ignored")
			}
		}
		if _, err := m.Local(); err != nil {
			failKeyed(w, p, err)
		}
	case "rate-limiter":
		if _, err := m.RateLimiter(); err != nil {
			failKeyed(w, p, err)
		}
	}
}

// keyedError is a problem with one key of a middleware item.
type keyedError struct {
	key string
	err error
}

func keyed(key string, err error) error { return &keyedError{key, err} }
func (e *keyedError) Error() string     { return e.key + ": " + e.err.Error() }
func (e *keyedError) Unwrap() error     { return e.err }

// failKeyed reports each of a joined error at its key's path.
func failKeyed(w *walker, p string, err error) {
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var k *keyedError
		if errors.As(e, &k) {
			w.fail(join(p, k.key), k.err)
		} else {
			w.fail(p, e)
		}
	}
}

// ---- hashing plain credentials at load ----

// hashPlainCreds replaces, in a keter.yaml, every basic-auth's creds
// (Keter's user: plain password) by hashed-creds (user: bcrypt hash), so
// neither the parsed config nor the unpacked file on disk keeps a plain
// password. It returns nil when there was nothing to hash.
func hashPlainCreds(data []byte, hash func(pw string) (string, error)) ([]byte, error) {
	if !bytes.Contains(data, []byte("basic-auth")) {
		return nil, nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, nil // the parser reports it
	}
	changed := false
	var errs []error
	var walk func(n *yaml.Node, depth int)
	walk = func(n *yaml.Node, depth int) {
		if n == nil || depth > 64 {
			return
		}
		if n.Kind == yaml.MappingNode {
			for i := 0; i+1 < len(n.Content); i += 2 {
				if n.Content[i].Value == "basic-auth" {
					if v := deref(n.Content[i+1]); v != nil && v.Kind == yaml.MappingNode {
						c, err := hashMapping(v, hash)
						changed = changed || c
						if err != nil {
							errs = append(errs, err)
						}
					}
				}
			}
		}
		for _, c := range n.Content {
			walk(c, depth+1)
		}
	}
	walk(&doc, 0)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if !changed {
		return nil, nil
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		return nil, fmt.Errorf("writing hashed credentials: %w", err)
	}
	return out, nil
}

// hashMapping turns one basic-auth mapping's creds into hashed-creds.
func hashMapping(ba *yaml.Node, hash func(string) (string, error)) (bool, error) {
	var creds, hashed *yaml.Node
	ci := -1
	for i := 0; i+1 < len(ba.Content); i += 2 {
		switch ba.Content[i].Value {
		case "creds":
			creds, ci = deref(ba.Content[i+1]), i
		case "hashed-creds":
			hashed = deref(ba.Content[i+1])
		}
	}
	if creds == nil || creds.Kind != yaml.MappingNode || len(creds.Content) == 0 {
		return false, nil // the parser reports what is wrong
	}
	if ba.Content[ci+1].Kind == yaml.AliasNode || creds.Anchor != "" {
		// Rewritten, the anchor's other uses would keep the passwords.
		return false, errors.New("basic-auth creds: write the passwords out, not through YAML anchors")
	}
	var added []*yaml.Node
	for i := 0; i+1 < len(creds.Content); i += 2 {
		u, pw := creds.Content[i], deref(creds.Content[i+1])
		if pw == nil || pw.Kind != yaml.ScalarNode || pw.Tag == "!!null" || len(pw.Value) > 72 || strings.ContainsAny(pw.Value, "\n\r\x00") {
			return false, nil // the parser reports it, without the password
		}
		h, err := hash(pw.Value)
		if err != nil {
			return false, fmt.Errorf("hashing the password of %s: %w", describe(u.Value), err)
		}
		added = append(added,
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: u.Value},
			&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: h, Style: yaml.DoubleQuotedStyle})
	}
	if hashed != nil && hashed.Kind == yaml.MappingNode {
		hashed.Content = append(hashed.Content, added...)
		ba.Content = append(ba.Content[:ci], ba.Content[ci+2:]...)
	} else {
		ba.Content[ci].Value = "hashed-creds"
		ba.Content[ci+1] = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Content: added}
	}
	return true, nil
}

// BcryptCost is the bcrypt cost of the hashes keter makes from plain
// creds. nginx checks the password of every request and its worker waits
// meanwhile: cost 5 takes about 1.7 ms, cost 10 about 57 ms (docs/nginx.md).
const BcryptCost = 5

func hashPassword(pw string) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
	return string(h), err
}

// rewriteConfig replaces the unpacked bundle's config file, inside root
// (so a symlink cannot send the write elsewhere), readable by keter only.
func rewriteConfig(root *os.Root, name string, data []byte) error {
	tmp := name + ".hashed.tmp"
	root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("hashing the passwords of %s: %w", name, err)
	}
	_, werr := f.Write(data)
	if werr == nil {
		werr = f.Sync()
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = root.Rename(tmp, name)
	}
	if werr != nil {
		root.Remove(tmp)
		return fmt.Errorf("hashing the passwords of %s: %w", name, werr)
	}
	return nil
}
