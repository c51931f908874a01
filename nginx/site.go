package nginx

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
)

// This file is what the front door serves: listeners and one site per
// stanza, built from the config and the apps and validated. How it is
// written in nginx's syntax is render.go's business.

// App is one deployed app as the front door sees it.
type App struct {
	Name   string
	Dir    string // absolute unpacked bundle root
	Config *bundle.AppConfig
	// Ports are each webapp stanza's instances' local ports (stanza index
	// → one per instance); nginx balances them.
	Ports map[int][]int
	// Fronts are the app's stable front ports, one per instance in the
	// same order, then spares, which a PortMap points at Ports (spares at
	// the instances in turn); nginx proxies to them all when it has a map,
	// so a change in the number of instances needs no reload.
	Fronts map[int][]int
	// Down are instance ports whose unit stopped for good: a PortMap sends
	// their front nowhere.
	Down map[int]bool
	// Resting are instance ports out of rotation for a moment (keter
	// restart, one instance at a time): a PortMap sends their fronts to
	// the stanza's other instances.
	Resting map[int]bool
	// Maintenance, when set, sends every host of the app to the
	// maintenance responder (see maintenance.go).
	Maintenance *Maintenance
	// CanaryFronts are each webapp stanza's canary fronts, rendered ahead
	// as its canary group; Canary is the canary version, nil for none
	// (see canary.go).
	CanaryFronts map[int][]int
	Canary       *Canary
}

// cert is what a TLS server block serves.
type cert struct {
	file, key string // file may be a chain bundle from Output.Concat
	session   bool
	acme      bool // file and key are acmeVar: a file per server name
}

// listener is one global listener, validated and ready to print.
type listener struct {
	listens []string // listen arguments without default_server
	tls     *cert
}

// site is one stanza that answers for hosts.
type site struct {
	app     string
	index   int
	hosts   []string
	secure  bool  // requires-secure
	sni     *cert // per-stanza certificate
	stanza  bundle.Stanza
	maint   bool   // proxied to the maintenance responder
	gate    string // the file whose presence sends it to the responder; "": none
	ports   []int  // webapp: its instances' ports (or front ports)
	canary  []int  // webapp behind a port map: its canary fronts
	root    string // static-files, absolute
	timeout string // proxy read/send timeout
	rpHost  string // reverse-proxy Host header value
	headers [][2]string
	rwReq   []rewrite
	rwResp  []rewrite
	// checkPlain: the server being rendered is a requires-secure site's
	// plain one behind trusted proxies (proxies.go).
	checkPlain bool
	acc        access // access rules (access.go)
}

type rewrite struct {
	header, variable, from, to string
}

// model is the validated desired state Render writes out.
type model struct {
	g         *config.Config
	p         Paths
	concat    map[string][]string
	listeners []listener
	sites     []*site
}

// buildModel validates the global config and every app, reporting every
// problem at once, and refuses any host claimed twice.
func buildModel(g *config.Config, apps []App, p Paths) (*model, error) {
	r := &model{g: g, p: p, concat: map[string][]string{}}
	if r.p.MimeTypes == "" {
		r.p.MimeTypes = "/etc/nginx/mime.types"
	}
	if err := errors.Join(r.global(), r.checkACME(), r.checkMaintenance(), r.checkProxies()); err != nil {
		return nil, err
	}
	sorted := slices.Clone(apps)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Name < sorted[j].Name })
	var errs []error
	for i, a := range sorted {
		if i > 0 && sorted[i-1].Name == a.Name {
			errs = append(errs, fmt.Errorf("app %q: listed twice: %w", a.Name, ErrInvalid))
			continue
		}
		if err := r.app(a); err != nil {
			errs = append(errs, fmt.Errorf("app %q: %w", a.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := r.duplicates(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *model) global() error {
	g := r.g
	var errs []error
	if g.Nginx.ClientMaxBodySize != "" && !sizeRE.MatchString(g.Nginx.ClientMaxBodySize) {
		errs = append(errs, fmt.Errorf("nginx.client-max-body-size %q: must be a number with an optional k, m or g: %w", g.Nginx.ClientMaxBodySize, ErrInvalid))
	}
	for what, f := range map[string]string{
		"unknown-host-response-file":    g.UnknownHostResponseFile,
		"missing-host-response-file":    g.MissingHostResponseFile,
		"proxy-exception-response-file": g.ProxyExceptionResponseFile,
	} {
		if f != "" {
			if err := checkPath(what, f); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if g.HealthcheckPath != "" {
		if err := checkURLPath("healthcheck-path", g.HealthcheckPath); err != nil {
			errs = append(errs, err)
		}
	}
	if len(g.Listeners) == 0 {
		errs = append(errs, fmt.Errorf("listeners: none: %w", ErrInvalid))
	}
	seen := map[string]bool{}
	for i, l := range g.Listeners {
		ls, err := r.listener(l)
		if err != nil {
			errs = append(errs, fmt.Errorf("listeners[%d]: %w", i, err))
			continue
		}
		for _, a := range ls.listens {
			if seen[a] {
				errs = append(errs, fmt.Errorf("listeners[%d]: address %s is listed twice: %w", i, a, ErrInvalid))
			}
			seen[a] = true
		}
		r.listeners = append(r.listeners, ls)
	}
	return errors.Join(errs...)
}

func (r *model) listener(l config.Listener) (listener, error) {
	if l.Port < 1 || l.Port > 65535 {
		return listener{}, fmt.Errorf("port %d: %w", l.Port, ErrInvalid)
	}
	port := strconv.Itoa(l.Port)
	var ls listener
	switch h := l.Host; {
	case h == "*" || h == "":
		ls.listens = []string{port}
		if r.p.IPv6 {
			ls.listens = append(ls.listens, "[::]:"+port)
		}
	case h == "*4":
		ls.listens = []string{port}
	case h == "*6":
		ls.listens = []string{"[::]:" + port}
	case net.ParseIP(h) != nil:
		ls.listens = []string{hostPort(h, l.Port)}
	default:
		if err := validHost(h); err != nil || strings.HasPrefix(h, "*") {
			return listener{}, fmt.Errorf("host %q: must be *, an IP address or a host name: %w", h, ErrInvalid)
		}
		ls.listens = []string{hostPort(h, l.Port)}
	}
	if l.ACME {
		if r.p.ACME == nil {
			return listener{}, fmt.Errorf("acme: keter runs no ACME client (acme.email is missing): %w", ErrInvalid)
		}
		ls.tls = acmeCert(l.Session)
	}
	if l.Certificate != "" || l.Key != "" {
		c, err := r.cert("", l.Certificate, l.Key, l.ChainCertificates)
		if err != nil {
			return listener{}, err
		}
		c.session = l.Session
		ls.tls = c
	}
	return ls, nil
}

// cert validates certificate paths (relative ones resolve against dir)
// and plans a chain bundle when there is a chain.
func (r *model) cert(dir, certFile, key string, chain []string) (*cert, error) {
	abs := func(p string) string {
		if p != "" && !filepath.IsAbs(p) && dir != "" {
			return filepath.Join(dir, p)
		}
		return p
	}
	c := &cert{file: abs(certFile), key: abs(key)}
	errs := []error{checkPath("certificate", c.file), checkPath("key", c.key)}
	srcs := []string{c.file}
	for _, ch := range chain {
		ch = abs(ch)
		errs = append(errs, checkPath("chain-certificates", ch))
		srcs = append(srcs, ch)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(chain) > 0 {
		sum := sha256.Sum256([]byte(strings.Join(srcs, "\x00")))
		c.file = filepath.Join(r.p.Prefix, "tls", "chain-"+hex.EncodeToString(sum[:8])+".pem")
		if err := checkPath("chain bundle", c.file); err != nil {
			return nil, err
		}
		r.concat[c.file] = srcs
	}
	return c, nil
}

func (r *model) app(a App) error {
	if a.Config == nil {
		return fmt.Errorf("no config: %w", ErrInvalid)
	}
	if err := errors.Join(checkPath("bundle folder", a.Dir), r.checkErrorDir(a)); err != nil {
		return err
	}
	var errs []error
	for i, st := range a.Config.Stanzas {
		if st.Type == bundle.TypeBackground || st.Background != nil || st.Scheduled != nil {
			continue
		}
		s, err := r.stanza(a, i, st)
		if err != nil {
			errs = append(errs, fmt.Errorf("stanza %d (%s): %w", i, st.Type, err))
			continue
		}
		s.maint = r.maintained(a, st)
		s.gate = r.gate(a, st)
		if st.WebApp != nil {
			s.canary = r.canaryFronts(a, i)
		}
		r.sites = append(r.sites, s)
	}
	return errors.Join(errs...)
}

func (r *model) stanza(a App, i int, st bundle.Stanza) (*site, error) {
	s := &site{app: a.Name, index: i, secure: st.RequiresSecure, stanza: st}
	var errs []error
	seen := map[string]bool{}
	for _, h := range st.Hosts() {
		h = strings.ToLower(h)
		if err := validHost(h); err != nil {
			errs = append(errs, err)
			continue
		}
		if !seen[h] {
			seen[h] = true
			s.hosts = append(s.hosts, h)
		}
	}
	if len(s.hosts) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no hosts: %w", ErrInvalid))
	}
	var ssl bundle.SSL
	var mw []bundle.Middleware
	switch {
	case st.WebApp != nil:
		ssl, mw = st.WebApp.SSL, st.WebApp.Middleware
		ports := a.Ports[i]
		if len(ports) == 0 {
			errs = append(errs, fmt.Errorf("no local port for the webapp: %w", ErrInvalid))
		}
		for _, port := range ports {
			if port < 1 || port > 65535 {
				errs = append(errs, fmt.Errorf("local port %d of the webapp: %w", port, ErrInvalid))
			}
		}
		s.ports = ports
		s.timeout = r.timeout(st.WebApp.ConnectionTimeBound, nil)
	case st.StaticFiles != nil:
		ssl, mw = st.StaticFiles.SSL, st.StaticFiles.Middleware
		root := filepath.Join(a.Dir, st.StaticFiles.Root)
		if rel, err := filepath.Rel(a.Dir, root); err != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(st.StaticFiles.Root) {
			errs = append(errs, fmt.Errorf("root %q: must stay inside the bundle: %w", st.StaticFiles.Root, ErrInvalid))
		} else if err := checkPath("root", root); err != nil {
			errs = append(errs, err)
		}
		s.root = root
	case st.Redirect != nil:
		ssl = st.Redirect.SSL
		errs = append(errs, r.checkRedirect(st.Redirect))
	case st.ReverseProxy != nil:
		ssl, mw = st.ReverseProxy.SSL, st.ReverseProxy.Middleware
		errs = append(errs, r.checkReverseProxy(s, st.ReverseProxy))
	default:
		errs = append(errs, fmt.Errorf("type %q: %w", st.Type, ErrUnsupported))
	}
	for _, m := range mw {
		errs = append(errs, r.middleware(s, m))
	}
	errs = append(errs, checkFront(st.Front))
	errs = append(errs, r.addresses(s, stanzaAccess(st)))
	if ssl.Certificate != "" || ssl.Key != "" {
		c, err := r.cert(a.Dir, ssl.Certificate, ssl.Key, ssl.ChainCertificates)
		if err != nil {
			errs = append(errs, fmt.Errorf("ssl: %w", err))
		}
		s.sni = c
	} else if ssl.ACME {
		errs = append(errs, r.sslACME(s))
	}
	return s, errors.Join(errs...)
}

// noBound stands for "no time bound": nginx has no infinite timeout.
const noBound = "86400s"

// timeout picks the proxy timeout: per-stanza µs, else the global ms.
func (r *model) timeout(stanzaMicros, override *int64) string {
	ms := r.g.ConnectionTimeBound
	if stanzaMicros != nil {
		ms = (*stanzaMicros + 999) / 1000
	}
	if override != nil {
		ms = (*override + 999) / 1000
	}
	if ms <= 0 {
		return noBound
	}
	return strconv.FormatInt(ms, 10) + "ms"
}

func (r *model) checkRedirect(rd *bundle.Redirect) error {
	var errs []error
	switch rd.Status {
	case 0, 301, 302, 303, 307, 308:
	default:
		errs = append(errs, fmt.Errorf("status %d: nginx redirects with 301, 302, 303, 307 or 308: %w", rd.Status, ErrUnsupported))
	}
	if len(rd.Actions) == 0 {
		errs = append(errs, fmt.Errorf("no actions: %w", ErrInvalid))
	}
	for j, act := range rd.Actions {
		if act.Path != "" {
			if err := checkURLPath(fmt.Sprintf("actions[%d].path", j), act.Path); err != nil {
				errs = append(errs, err)
			}
		}
		switch {
		case act.URL != "" && act.Host != "":
			errs = append(errs, fmt.Errorf("actions[%d]: url and host are exclusive: %w", j, ErrInvalid))
		case act.URL != "":
			errs = append(errs, checkURL(fmt.Sprintf("actions[%d].url", j), act.URL))
		case act.Host != "":
			if err := validHost(strings.ToLower(act.Host)); err != nil || strings.HasPrefix(act.Host, "*") {
				errs = append(errs, fmt.Errorf("actions[%d].host %q: must be a host name: %w", j, act.Host, ErrInvalid))
			}
			if act.Port < 0 || act.Port > 65535 {
				errs = append(errs, fmt.Errorf("actions[%d].port %d: %w", j, act.Port, ErrInvalid))
			}
		default:
			errs = append(errs, fmt.Errorf("actions[%d]: needs url or host: %w", j, ErrInvalid))
		}
	}
	return errors.Join(errs...)
}

// headers keter sets itself or that nginx must own.
var reservedHeaders = map[string]bool{
	"host": true, "content-length": true, "transfer-encoding": true, "connection": true,
	"upgrade": true, "x-forwarded-for": true, "x-forwarded-proto": true, "x-real-ip": true,
}

func (r *model) checkReverseProxy(s *site, rp *bundle.ReverseProxy) error {
	var errs []error
	if err := checkUpstreamHost(rp.ReversedHost); err != nil {
		errs = append(errs, err)
	}
	if rp.ReversedPort < 1 || rp.ReversedPort > 65535 {
		errs = append(errs, fmt.Errorf("reversed-port %d: %w", rp.ReversedPort, ErrInvalid))
	}
	s.rpHost = rp.ReversedHost
	if def := map[bool]int{false: 80, true: 443}[rp.ReversedSSL]; rp.ReversedPort != def {
		s.rpHost = hostPort(rp.ReversedHost, rp.ReversedPort)
	}
	s.timeout = r.timeout(rp.ConnectionTimeBound, rp.Timeout)
	for _, kr := range []struct {
		kind  string
		rules []bundle.Rewrite
	}{{"rewrite-request", rp.RewriteRequest}, {"rewrite-response", rp.RewriteResponse}} {
		kind, rules := kr.kind, kr.rules
		seen := map[string]bool{}
		for j, rw := range rules {
			what := fmt.Sprintf("%s[%d]", kind, j)
			if err := checkHeaderName(what+".header", rw.Header); err != nil {
				errs = append(errs, err)
				continue
			}
			lh := strings.ToLower(rw.Header)
			if reservedHeaders[lh] {
				errs = append(errs, fmt.Errorf("%s.header %q: keter or nginx owns this header: %w", what, rw.Header, ErrUnsupported))
				continue
			}
			if seen[lh] {
				// Keter keeps one rule per header (a map); so do we.
				errs = append(errs, fmt.Errorf("%s.header %q: one rule per header: %w", what, rw.Header, ErrInvalid))
				continue
			}
			seen[lh] = true
			groups, err := checkRegex(what+".from", rw.From)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			to, err := rewriteTo(what+".to", rw.To, groups)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			rule := rewrite{header: rw.Header, from: rw.From, to: "$1" + to + "$" + strconv.Itoa(groups+3)}
			if kind == "rewrite-request" {
				s.rwReq = append(s.rwReq, rule)
			} else {
				s.rwResp = append(s.rwResp, rule)
			}
		}
	}
	return errors.Join(errs...)
}

func (r *model) middleware(s *site, m bundle.Middleware) error {
	switch m.Name {
	case "autohead":
		return nil // nginx answers HEAD itself
	case "basic-auth", "local", "rate-limiter":
		return r.accessMiddleware(s, m)
	case "headers":
		keys := make([]string, 0, len(m.Config))
		for k := range m.Config {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var errs []error
		for _, k := range keys {
			v, ok := m.Config[k].(string)
			if !ok {
				errs = append(errs, fmt.Errorf("middleware headers %q: value must be a string: %w", k, ErrInvalid))
				continue
			}
			if err := errors.Join(checkHeaderName("middleware headers", k), checkHeaderValue("middleware headers "+k, v)); err != nil {
				errs = append(errs, err)
				continue
			}
			s.headers = append(s.headers, [2]string{k, v})
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("middleware %q: %w", m.Name, ErrUnsupported)
}

// duplicates refuses a host claimed by two stanzas, naming both owners.
func (r *model) duplicates() error {
	type owner struct {
		app   string
		index int
	}
	owners := map[string]owner{}
	var errs []error
	for _, s := range r.sites {
		for _, h := range s.hosts {
			if h == ControlHost {
				errs = append(errs, fmt.Errorf("app %q: host %q is reserved for keter: %w", s.app, h, ErrInvalid))
				continue
			}
			if o, ok := owners[h]; ok {
				if o.app == s.app {
					errs = append(errs, fmt.Errorf("app %q: host %q is used by stanzas %d and %d: %w", s.app, h, o.index, s.index, ErrDuplicateHost))
				} else {
					errs = append(errs, fmt.Errorf("host %q is claimed by app %q and app %q: %w", h, o.app, s.app, ErrDuplicateHost))
				}
				continue
			}
			owners[h] = owner{s.app, s.index}
		}
	}
	return errors.Join(errs...)
}
