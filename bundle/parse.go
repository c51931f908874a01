package bundle

import (
	"bytes"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxConfigBytes bounds config/keter.yaml; real ones are a few KiB.
const MaxConfigBytes = 1 << 20

// Defaults from Keter's V10 parser.
const (
	DefaultEnsureAliveTimeBound = 90_000_000 // µs
	DefaultRedirectStatus       = 303
	DefaultRestartDelaySeconds  = 5
	UnlimitedRestarts           = -1
)

// Parse reads keter.yaml in either Keter format into the model: the flat
// format when there is no `stanzas` key, the stanza format otherwise.
// Defaults are applied, hosts lower-cased, and paths resolved from the
// config/ folder to cleaned bundle-relative ones. Every problem is
// reported at once, joined with errors.Join, each as `key.path: reason`.
// Unknown keys are ignored; use ParseWithWarnings to see them.
func Parse(data []byte) (*AppConfig, error) {
	c, _, err := ParseWithWarnings(data)
	return c, err
}

// ParseWithWarnings is Parse that also returns one warning per ignored
// key or unsupported-but-kept setting ("stanzas[0].foo: unknown key
// ignored"). The warnings are returned even when err is not nil.
func ParseWithWarnings(data []byte) (*AppConfig, []string, error) {
	if len(data) > MaxConfigBytes {
		return nil, nil, fmt.Errorf("parsing keter.yaml: %w: larger than %d bytes", ErrInvalid, MaxConfigBytes)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("parsing keter.yaml: %w", err)
	}
	var extra yaml.Node
	if dec.Decode(&extra) == nil {
		return nil, nil, fmt.Errorf("parsing keter.yaml: %w: more than one YAML document", ErrInvalid)
	}
	w := &walker{}
	top := w.object(&doc, "")
	if top == nil {
		return nil, nil, errors.Join(w.errs...)
	}
	c := &AppConfig{Stanzas: []Stanza{}}
	c.Drain, _ = top.duration("drain", MaxDrain)
	if _, ok := top.vals["stanzas"]; ok {
		parseStanzaFormat(w, top, c)
	} else {
		parseFlat(w, top, c)
	}
	c.Release = parseRelease(w, top, c)
	top.done()
	uniqueHosts(w, c)
	uniqueJobs(w, c)
	if len(w.errs) > 0 {
		return nil, w.warns, errors.Join(w.errs...)
	}
	return c, w.warns, nil
}

// uniqueHosts refuses a host served by two stanzas: Keter silently keeps
// the last one; nginx would see two server blocks for one name.
func uniqueHosts(w *walker, c *AppConfig) {
	owner := map[string]int{}
	for i, s := range c.Stanzas {
		for _, h := range s.Hosts() {
			if h == "" {
				continue
			}
			if j, ok := owner[h]; ok && j != i {
				w.failf(index("stanzas", i), "host %s is already served by stanzas[%d]", h, j)
				continue
			}
			owner[h] = i
		}
	}
}

// relPath resolves p (relative to config/) to a cleaned bundle-relative
// path. Absolute paths are kept (cleaned) only when allowAbs.
func relPath(p string, allowAbs bool) (string, error) {
	if p == "" {
		return "", invalid("empty path")
	}
	if strings.ContainsAny(p, "\x00\n\r") {
		return "", invalid("path %s contains control characters", describe(p))
	}
	if path.IsAbs(p) {
		if !allowAbs {
			return "", invalid("absolute path %s is not allowed here; give a path relative to config/", describe(p))
		}
		return path.Clean(p), nil
	}
	r := path.Clean(path.Join("config", p))
	if r == ".." || strings.HasPrefix(r, "../") {
		return "", invalid("path %s escapes the bundle (paths are relative to the config/ folder)", describe(p))
	}
	return r, nil
}

func (o *obj) pathKey(key string, required, allowAbs bool) string {
	var s string
	var ok bool
	if required {
		s, ok = o.requiredStr(key)
	} else {
		s, ok = o.str(key)
	}
	if !ok {
		return ""
	}
	r, err := relPath(s, allowAbs)
	if err != nil {
		o.w.fail(join(o.path, key), err)
		return ""
	}
	return r
}

// hosts reads `host` or `hosts` (host wins, as in Keter), validated and
// lower-cased; at least one is required.
func (o *obj) hosts() []string {
	var raw []string
	var p string
	if h, ok := o.str("host"); ok {
		raw, p = []string{h}, join(o.path, "host")
		if o.has("hosts") {
			o.w.warn(join(o.path, "hosts"), "ignored because host is given (as in Keter)")
		}
	} else if o.get("host") == nil {
		raw, p = o.strList("hosts"), join(o.path, "hosts")
		if o.get("hosts") == nil {
			o.w.failf(join(o.path, "host"), "required: give host or hosts")
			return nil
		}
		if len(raw) == 0 {
			o.w.failf(p, "must not be empty")
			return nil
		}
	}
	out := make([]string, 0, len(raw))
	seen := map[string]bool{}
	for i, h := range raw {
		n, err := normHost(h)
		ip := p
		if p == join(o.path, "hosts") {
			ip = index(p, i)
		}
		if err != nil {
			o.w.fail(ip, err)
			continue
		}
		if seen[n] {
			o.w.warn(ip, "duplicate host %s ignored", n)
			continue
		}
		seen[n] = true
		out = append(out, n)
	}
	return out
}

// ssl reads Keter's `ssl`: false, true, {certificate, key,
// chain-certificates}, or acme (Keter #174's spelling: a certificate from
// keter's ACME CA).
func (o *obj) ssl() SSL {
	n := o.get("ssl")
	if n == nil {
		return SSL{}
	}
	p := join(o.path, "ssl")
	if n.Kind == yaml.ScalarNode {
		if n.Tag == "!!str" && n.Value == "acme" {
			return SSL{Enabled: true, ACME: true}
		}
		var b bool
		if n.Decode(&b) != nil {
			o.w.failf(p, "must be true, false, acme or a mapping with certificate and key, found %s", kind(n))
		}
		return SSL{Enabled: b}
	}
	s := o.w.object(n, p)
	if s == nil {
		return SSL{}
	}
	out := SSL{Enabled: true}
	out.Certificate = s.pathKey("certificate", true, true)
	out.Key = s.pathKey("key", true, true)
	cp := join(p, "chain-certificates")
	for i, c := range s.strList("chain-certificates") {
		r, err := relPath(c, true)
		if err != nil {
			o.w.fail(index(cp, i), err)
			continue
		}
		out.ChainCertificates = append(out.ChainCertificates, r)
	}
	s.done()
	return out
}

// exec reads exec, args, env and forward-env.
func (o *obj) exec() Exec {
	e := Exec{Path: o.pathKey("exec", true, true), Args: []string{}}
	if a := o.strList("args"); a != nil {
		e.Args = a
	}
	e.Env = o.strMap("env")
	for k := range e.Env {
		if err := validEnvName(k); err != nil {
			o.w.fail(join(join(o.path, "env"), k), err)
		}
	}
	e.ForwardEnv = o.envNames("forward-env")
	return e
}

func (o *obj) envNames(key string) []string {
	l := o.strList(key)
	for i, n := range l {
		if err := validEnvName(n); err != nil {
			o.w.fail(index(join(o.path, key), i), err)
		}
	}
	return l
}

// microseconds reads an optional non-negative µs bound.
func (o *obj) microseconds(key string) *int64 {
	v, ok := o.intRange(key, 0, 1<<62)
	if !ok {
		return nil
	}
	return &v
}

func parseStanzaFormat(w *walker, top *obj, c *AppConfig) {
	items, p := top.list("stanzas")
	if top.get("stanzas") != nil && len(items) == 0 && deref(top.vals["stanzas"]).Kind == yaml.SequenceNode {
		w.failf(p, "must hold at least one stanza")
	}
	if top.get("stanzas") == nil {
		w.failf(p, "must be a list of stanzas")
	}
	for i, n := range items {
		if s, ok := parseStanza(w, n, index(p, i), i); ok {
			c.Stanzas = append(c.Stanzas, s)
		}
	}
	if pn := top.get("plugins"); pn != nil {
		po := w.object(pn, "plugins")
		if po != nil {
			c.Plugins.Postgres = parsePostgres(w, po)
			po.done()
		}
	}
	if top.has("postgres") {
		w.warn("postgres", "ignored in the stanza format (as in Keter); use plugins.postgres")
	}
}

func parsePostgres(w *walker, po *obj) *Postgres {
	n := po.get("postgres")
	if n == nil {
		return nil
	}
	p := join(po.path, "postgres")
	if n.Kind == yaml.ScalarNode {
		var b bool
		if n.Decode(&b) != nil {
			w.failf(p, "must be true, false or a list of {server, port}, found %s", kind(n))
			return nil
		}
		if !b {
			return nil
		}
		return &Postgres{}
	}
	if n.Kind != yaml.SequenceNode {
		w.failf(p, "must be true, false or a list of {server, port}, found %s", kind(n))
		return nil
	}
	if len(n.Content) == 0 {
		return &Postgres{}
	}
	if len(n.Content) > 1 {
		w.warn(p, "only the first server is used (as in Keter)")
	}
	s := w.object(n.Content[0], index(p, 0))
	if s == nil {
		return nil
	}
	defer s.done()
	server, sok := s.str("server")
	port, pok := s.intRange("port", 1, 65535)
	if !sok || !pok {
		w.warn(index(p, 0), "server and port are both needed; using keter's default server (as in Keter)")
		return &Postgres{}
	}
	if err := validPlainHost(server); err != nil {
		w.fail(join(index(p, 0), "server"), err)
		return nil
	}
	return &Postgres{Server: strings.ToLower(server), Port: int(port)}
}

func parseStanza(w *walker, n *yaml.Node, p string, i int) (Stanza, bool) {
	o := w.object(n, p)
	if o == nil {
		return Stanza{}, false
	}
	defer o.done()
	t, ok := o.requiredStr("type")
	if !ok {
		return Stanza{}, false
	}
	s := Stanza{Type: StanzaType(t), RequiresSecure: o.boolean("requires-secure", false)}
	s.Front = o.front(s.Type)
	switch s.Type {
	case TypeWebApp:
		s.WebApp = parseWebApp(o)
	case TypeStaticFiles:
		defer func() { warnWholeBundle(o, s.StaticFiles) }()
		s.StaticFiles = &StaticFiles{
			Root:                o.pathKey("root", true, false),
			Hosts:               o.hosts(),
			DirectoryListing:    o.boolean("directory-listing", false),
			SSL:                 o.ssl(),
			ConnectionTimeBound: o.microseconds("connection-time-bound"),
			Middleware:          o.middleware(),
			Access:              o.access(),
		}
	case TypeRedirect:
		s.Redirect = parseRedirect(o)
	case TypeReverseProxy:
		s.ReverseProxy = parseReverseProxy(o)
	case TypeBackground:
		s.Background = parseBackground(o)
	case TypeScheduled:
		s.Scheduled = parseScheduled(o, i)
	default:
		w.failf(join(p, "type"), "unknown stanza type %s; want webapp, static-files, redirect, reverse-proxy, background or scheduled", describe(t))
		return Stanza{}, false
	}
	return s, true
}

// warnWholeBundle warns when a static root is the bundle root: it serves
// config/keter.yaml too, which may hold secrets in env.
func warnWholeBundle(o *obj, s *StaticFiles) {
	if s != nil && s.Root == "." {
		o.w.warn(join(o.path, "root"), "serves the whole bundle, including config/keter.yaml")
	}
}

func parseWebApp(o *obj) *WebApp {
	a := &WebApp{
		Exec:                 o.exec(),
		Hosts:                o.hosts(),
		SSL:                  o.ssl(),
		ConnectionTimeBound:  o.microseconds("connection-time-bound"),
		EnsureAliveTimeBound: DefaultEnsureAliveTimeBound,
		PortEnvVars:          o.envNames("port-env-vars"),
		Middleware:           o.middleware(),
		Access:               o.access(),
	}
	if v, ok := o.intRange("ensure-alive-time-bound", 1, 1<<62); ok {
		a.EnsureAliveTimeBound = v
	}
	if v, ok := o.intRange("instances", 1, MaxInstances); ok {
		a.Instances = int(v)
	}
	if hp, ok := o.str("health-check-path"); ok {
		if err := ValidPath(hp); err != nil {
			o.w.fail(join(o.path, "health-check-path"), err)
		}
		a.HealthCheckPath = hp
	}
	a.Systemd = o.systemd(true)
	parseIdle(o, a)
	return a
}

func parseBackground(o *obj) *Background {
	b := &Background{
		Exec:                o.exec(),
		RestartCount:        UnlimitedRestarts,
		RestartDelaySeconds: DefaultRestartDelaySeconds,
		Systemd:             o.systemd(false),
	}
	if n := o.get("restart-count"); n != nil {
		p := join(o.path, "restart-count")
		var v int
		switch {
		case n.Kind == yaml.ScalarNode && n.Value == "unlimited":
		case n.Kind == yaml.ScalarNode && n.Decode(&v) == nil && v >= 0:
			b.RestartCount = v
		default:
			o.w.failf(p, "must be a number ≥ 0 or \"unlimited\", found %s", kind(n))
		}
	}
	if v, ok := o.intRange("restart-delay-seconds", 0, 1<<31-1); ok {
		b.RestartDelaySeconds = int(v)
	}
	return b
}

func parseRedirect(o *obj) *Redirect {
	r := &Redirect{Hosts: o.hosts(), Status: DefaultRedirectStatus, SSL: o.ssl(), Actions: []RedirectAction{}}
	if v, ok := o.intRange("status", 300, 399); ok {
		r.Status = int(v)
	}
	items, p := o.list("actions")
	if o.get("actions") == nil {
		o.w.failf(p, "required")
	} else if len(items) == 0 && deref(o.vals["actions"]).Kind == yaml.SequenceNode {
		o.w.failf(p, "must hold at least one action")
	}
	for i, n := range items {
		ap := index(p, i)
		a := o.w.object(n, ap)
		if a == nil {
			continue
		}
		var act RedirectAction
		if s, ok := a.str("path"); ok {
			if err := ValidPath(s); err != nil {
				o.w.fail(join(ap, "path"), err)
			}
			act.Path = s
		}
		if u, ok := a.str("url"); ok {
			if err := ValidURL(u); err != nil {
				o.w.fail(join(ap, "url"), err)
			}
			act.URL = u
			for _, k := range []string{"host", "secure", "port"} {
				if a.has(k) {
					o.w.failf(join(ap, k), "not allowed together with url")
				}
			}
		} else if a.get("url") == nil {
			h, ok := a.requiredStr("host")
			if ok {
				if err := validPlainHost(h); err != nil {
					o.w.fail(join(ap, "host"), err)
				}
				act.Host = strings.ToLower(h)
			}
			act.Secure = a.boolean("secure", false)
			if v, ok := a.intRange("port", 1, 65535); ok {
				act.Port = int(v)
			}
		}
		a.done()
		r.Actions = append(r.Actions, act)
	}
	return r
}

func parseReverseProxy(o *obj) *ReverseProxy {
	r := &ReverseProxy{
		ReversedSSL:         o.boolean("reversed-ssl", false),
		SSL:                 o.ssl(),
		Timeout:             o.microseconds("timeout"),
		PreserveHost:        o.boolean("preserve-host", false),
		ConnectionTimeBound: o.microseconds("connection-time-bound"),
		Middleware:          o.middleware(),
		Access:              o.access(),
	}
	if h, ok := o.requiredStr("reversed-host"); ok {
		if err := validPlainHost(h); err != nil {
			o.w.fail(join(o.path, "reversed-host"), err)
		}
		r.ReversedHost = strings.ToLower(h)
	}
	if v, ok := o.intRange("reversed-port", 1, 65535); ok {
		r.ReversedPort = int(v)
	} else if o.get("reversed-port") == nil {
		o.w.failf(join(o.path, "reversed-port"), "required")
	}
	if h, ok := o.requiredStr("reversing-host"); ok {
		n, err := normHost(h)
		if err != nil {
			o.w.fail(join(o.path, "reversing-host"), err)
		}
		r.ReversingHost = n
	}
	r.RewriteRequest = o.rewrites("rewrite-request")
	r.RewriteResponse = o.rewrites("rewrite-response")
	return r
}

func (o *obj) rewrites(key string) []Rewrite {
	items, p := o.list(key)
	var out []Rewrite
	for i, n := range items {
		rp := index(p, i)
		ro := o.w.object(n, rp)
		if ro == nil {
			continue
		}
		var rw Rewrite
		if h, ok := ro.requiredStr("header"); ok {
			if err := ValidHeaderName(h); err != nil {
				o.w.fail(join(rp, "header"), err)
			}
			rw.Header = h
		}
		if f, ok := ro.requiredStr("from"); ok {
			if err := validRegex(f); err != nil {
				o.w.fail(join(rp, "from"), err)
			}
			rw.From = f
		}
		if t, ok := ro.str("to"); ok {
			if err := validText(t, "replacement", true); err != nil {
				o.w.fail(join(rp, "to"), err)
			}
			rw.To = t
		} else if ro.get("to") == nil {
			o.w.failf(join(rp, "to"), "required")
		}
		ro.done()
		out = append(out, rw)
	}
	return out
}

// Keter's middleware items (Keter.Types.Middleware). The ones that need a
// WAI application cannot be done by nginx in front of the app; they are
// kept and warned about.
var (
	bareMiddleware = map[string]bool{
		"accept-override": true, "autohead": true, "jsonp": true,
		"method-override": true, "method-override-post": true,
	}
	objMiddleware = map[string]bool{
		"basic-auth": true, "headers": true, "local": true, "rate-limiter": true,
	}
	appOnlyMiddleware = map[string]bool{
		"accept-override": true, "jsonp": true, "method-override": true, "method-override-post": true,
	}
)

func (o *obj) middleware() []Middleware {
	items, p := o.list("middleware")
	var out []Middleware
	for i, n := range items {
		mp := index(p, i)
		n = deref(n)
		if n == nil {
			continue
		}
		switch n.Kind {
		case yaml.ScalarNode:
			if !bareMiddleware[n.Value] {
				if objMiddleware[n.Value] {
					o.w.failf(mp, "middleware %s needs settings: write {%s: {...}}", describe(n.Value), n.Value)
				} else {
					o.w.failf(mp, "unknown middleware %s", describe(n.Value))
				}
				continue
			}
			if appOnlyMiddleware[n.Value] {
				o.w.warn(mp, "middleware %s is kept but not supported by keter's nginx front", n.Value)
			}
			out = append(out, Middleware{Name: n.Value})
		case yaml.MappingNode:
			if len(n.Content) != 2 {
				o.w.failf(mp, "a middleware item must have exactly one key")
				continue
			}
			name := n.Content[0].Value
			if !objMiddleware[name] {
				if bareMiddleware[name] {
					o.w.failf(mp, "middleware %s takes no settings: write it as a plain string", describe(name))
				} else {
					o.w.failf(mp, "unknown middleware %s", describe(name))
				}
				continue
			}
			m := Middleware{Name: name}
			cfg := deref(n.Content[1])
			if cfg == nil || cfg.Kind != yaml.MappingNode {
				o.w.failf(join(mp, name), "must be a mapping, found %s", kind(orEmpty(cfg)))
				continue
			}
			if err := cfg.Decode(&m.Config); err != nil {
				o.w.fail(join(mp, name), err)
				continue
			}
			validMiddleware(o.w, join(mp, name), m)
			out = append(out, m)
		default:
			o.w.failf(mp, "must be a middleware name or {name: settings}, found %s", kind(n))
		}
	}
	return out
}

// validMiddleware checks what nginx would print from headers and the
// access items (middleware.go).
func validMiddleware(w *walker, p string, m Middleware) {
	switch m.Name {
	case "basic-auth", "local", "rate-limiter":
		validAccessMiddleware(w, p, m)
	case "headers":
		keys := make([]string, 0, len(m.Config))
		for k := range m.Config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := ValidHeaderName(k); err != nil {
				w.fail(join(p, k), err)
				continue
			}
			v, ok := m.Config[k].(string)
			if !ok {
				if m.Config[k] == nil {
					w.failf(join(p, k), "header value must be a string")
					continue
				}
				v = fmt.Sprint(m.Config[k])
				m.Config[k] = v
			}
			if err := validText(v, "header value", false); err != nil {
				w.fail(join(p, k), err)
			}
		}
	}
}

// systemd reads our `systemd:` addition.
func (o *obj) systemd(webapp bool) Systemd {
	n := o.get("systemd")
	if n == nil {
		return Systemd{}
	}
	p := join(o.path, "systemd")
	s := o.w.object(n, p)
	if s == nil {
		return Systemd{}
	}
	defer s.done()
	var out Systemd
	if v, ok := s.str("memory-max"); ok {
		b, err := parseBytes(v)
		if err != nil {
			o.w.fail(join(p, "memory-max"), err)
		}
		out.MemoryMax = b
	}
	if v, ok := s.str("cpu-quota"); ok {
		q, err := parsePercent(v)
		if err != nil {
			o.w.fail(join(p, "cpu-quota"), err)
		}
		out.CPUQuotaPercent = q
	}
	if v, ok := s.intRange("tasks-max", 1, 1<<62); ok {
		out.TasksMax = uint64(v)
	}
	out.MemoryDenyWriteExecute = s.denyWriteExecute()
	if v, ok := s.intRange("stop-timeout-sec", 1, 86400); ok {
		out.StopTimeoutSec = uint32(v)
	}
	if webapp {
		if v, ok := s.intRange("restart-delay-sec", 0, 86400); ok {
			out.RestartDelaySec = uint32(v)
		}
	} else if s.has("restart-delay-sec") {
		o.w.failf(join(p, "restart-delay-sec"), "not for background stanzas: use restart-delay-seconds")
	}
	return out
}

// denyWriteExecute reads memory-deny-write-execute and the older
// allow-jit, its opposite; nil when neither is given. Both may be given
// only when they agree.
func (o *obj) denyWriteExecute() *bool {
	wx, wxSet := o.optBool("memory-deny-write-execute")
	jit, jitSet := o.optBool("allow-jit")
	switch {
	case wxSet && jitSet && wx == jit:
		o.w.failf(join(o.path, "memory-deny-write-execute"),
			"%t contradicts allow-jit: %t (allow-jit: true means memory-deny-write-execute: false); keep one of the two", wx, jit)
		return nil
	case wxSet:
		return &wx
	case jitSet:
		v := !jit
		return &v
	}
	return nil
}

// parseBytes reads a size like systemd: a number with an optional K, M,
// G or T suffix (powers of 1024).
func parseBytes(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	mult := uint64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n == 0 || n > (1<<62)/mult {
		return 0, invalid("size %s must be a positive number with an optional K, M, G or T suffix (e.g. 512M)", describe(s))
	}
	return n * mult, nil
}

// parsePercent reads "50%" (or a bare number) as a CPU quota in percent.
func parsePercent(s string) (uint32, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil || n == 0 || n > 100000 {
		return 0, invalid("CPU quota %s must be a positive percentage like 50%% (200%% = two cores)", describe(s))
	}
	return uint32(n), nil
}

// parseFlat reads Keter's old flat format (V04) and converts it as Keter
// does: a webapp when exec is given, then static-hosts and redirects
// (sorted and de-duplicated: Keter keeps them in Sets), postgres: true as
// the plugin.
func parseFlat(w *walker, top *obj, c *AppConfig) {
	if top.has("exec") {
		// The flat format has only exec and args (no env, forward-env).
		a := &WebApp{
			Exec:                 Exec{Path: top.pathKey("exec", true, true), Args: []string{}},
			EnsureAliveTimeBound: DefaultEnsureAliveTimeBound,
			SSL:                  SSL{Enabled: top.boolean("ssl", false)},
		}
		if args := top.strList("args"); args != nil {
			a.Args = args
		}
		if v, ok := top.intRange("instances", 1, MaxInstances); ok {
			a.Instances = int(v)
		}
		parseIdle(top, a)
		var raw []string
		if h, ok := top.requiredStr("host"); ok {
			raw = append(raw, h)
		}
		for _, h := range top.strList("extra-hosts") {
			raw = append(raw, h)
		}
		seen := map[string]bool{}
		for i, h := range raw {
			p := "host"
			if i > 0 {
				p = index("extra-hosts", i-1)
			}
			n, err := normHost(h)
			if err != nil {
				w.fail(p, err)
				continue
			}
			if !seen[n] {
				seen[n] = true
				a.Hosts = append(a.Hosts, n)
			}
		}
		c.Stanzas = append(c.Stanzas, Stanza{Type: TypeWebApp, WebApp: a})
		if top.has("postgres") && top.boolean("postgres", false) {
			c.Plugins.Postgres = &Postgres{}
		}
	} else {
		for _, k := range []string{"args", "host", "extra-hosts", "ssl", "postgres", "instances"} {
			if top.has(k) {
				w.warn(k, "ignored because exec is not given (as in Keter)")
			}
		}
	}

	type static struct{ host, root string }
	var statics []static
	items, p := top.list("static-hosts")
	for i, n := range items {
		sp := index(p, i)
		o := w.object(n, sp)
		if o == nil {
			continue
		}
		var s static
		if h, ok := o.requiredStr("host"); ok {
			if n, err := normHost(h); err != nil {
				w.fail(join(sp, "host"), err)
			} else {
				s.host = n
			}
		}
		s.root = o.pathKey("root", true, false)
		if s.root == "." {
			w.warn(join(sp, "root"), "serves the whole bundle, including config/keter.yaml")
		}
		o.done()
		statics = append(statics, s)
	}
	sort.Slice(statics, func(i, j int) bool {
		if statics[i].host != statics[j].host {
			return statics[i].host < statics[j].host
		}
		return statics[i].root < statics[j].root
	})
	for i, s := range statics {
		if i > 0 && s == statics[i-1] {
			continue
		}
		c.Stanzas = append(c.Stanzas, Stanza{Type: TypeStaticFiles, StaticFiles: &StaticFiles{
			Root: s.root, Hosts: []string{s.host}, DirectoryListing: true,
		}})
	}

	type redir struct{ from, to string }
	var redirs []redir
	items, p = top.list("redirects")
	for i, n := range items {
		rp := index(p, i)
		o := w.object(n, rp)
		if o == nil {
			continue
		}
		var r redir
		if h, ok := o.requiredStr("from"); ok {
			if n, err := normHost(h); err != nil {
				w.fail(join(rp, "from"), err)
			} else {
				r.from = n
			}
		}
		if h, ok := o.requiredStr("to"); ok {
			if err := validPlainHost(h); err != nil {
				w.fail(join(rp, "to"), err)
			} else {
				r.to = strings.ToLower(h)
			}
		}
		o.done()
		redirs = append(redirs, r)
	}
	sort.Slice(redirs, func(i, j int) bool {
		if redirs[i].from != redirs[j].from {
			return redirs[i].from < redirs[j].from
		}
		return redirs[i].to < redirs[j].to
	})
	for i, r := range redirs {
		if i > 0 && r == redirs[i-1] {
			continue
		}
		c.Stanzas = append(c.Stanzas, Stanza{Type: TypeRedirect, Redirect: &Redirect{
			Hosts:   []string{r.from},
			Status:  301,
			Actions: []RedirectAction{{Host: r.to}},
		}})
	}
	if len(c.Stanzas) == 0 && len(w.errs) == 0 {
		w.failf("(top level)", "nothing to run: give exec and host (flat format) or stanzas")
	}
}
