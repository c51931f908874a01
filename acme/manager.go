package acme

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/keter-systemd/keter/config"
)

// Options wires a Manager.
type Options struct {
	Config *config.Config
	Log    *slog.Logger
	// Owner is the user nginx's workers run as: with certificates read at
	// each handshake, they read the files, not the root master.
	Owner string
	// Storage keeps the account and certificates; nil is the config's
	// acme.storage (PostgreSQL), or else a folder under ROOT/etc/acme.
	// Any certmagic.Storage (with its locks) lets several keters behind
	// one load balancer share them.
	Storage certmagic.Storage
	// RenewCheck is how often certificates are checked for renewal
	// (certmagic's 10 minutes when 0; SharedCheck with a shared storage).
	RenewCheck time.Duration
	// SharedCheck is how often, with a shared storage, keter looks there
	// for certificates other hosts got or renewed (DefaultSharedCheck
	// when 0).
	SharedCheck time.Duration
}

// Manager keeps a certificate from the CA for every host it is told
// about. Run serves the HTTP-01 responder and owns the background work.
type Manager struct {
	log      *slog.Logger
	acme     config.ACME
	magic    *certmagic.Config
	issuer   *certmagic.ACMEIssuer
	cache    *certmagic.Cache
	storage  certmagic.Storage
	dir      string // the files nginx reads
	fallback string
	socket   string
	uid, gid int
	shared   time.Duration // with a shared storage: how often to look at it
	// closeStorage closes a storage New opened (acme.storage).
	closeStorage func()
	unix         net.Listener // nginx proxies challenges here
	tcp          net.Listener // certmagic finds its challenge port taken: ours
	kick         chan struct{}
	changed      chan struct{}

	mu    sync.Mutex
	want  map[string]bool
	hosts map[string]*hostState
}

type hostState struct {
	skip     string             // why it cannot get a certificate
	cancel   context.CancelFunc // set while certmagic manages it
	checked  bool               // storage was read for a certificate
	issuer   string
	notAfter time.Time // of the CA's certificate in the file
	lastErr  string
	errAt    time.Time
	renewal  bool      // lastErr came from a renewal
	seen     time.Time // the shared storage's certificate last installed
}

// New prepares folders, the fallback certificate, the challenge sockets
// and certmagic; nothing talks to the CA until Ensure names hosts.
func New(o Options) (*Manager, error) {
	g := o.Config
	if g == nil || !g.ACMEEnabled() {
		return nil, errors.New("acme: no acme.email in the config")
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	m := &Manager{
		log: o.Log, acme: g.ACME, storage: o.Storage,
		dir:      filepath.Join(g.Etc(), "nginx", "acme"),
		fallback: filepath.Join(g.Etc(), "nginx", "acme-fallback.pem"),
		socket:   filepath.Join(g.Etc(), "nginx", "acme-challenge.sock"),
		kick:     make(chan struct{}, 1),
		changed:  make(chan struct{}, 1),
		want:     map[string]bool{},
		hosts:    map[string]*hostState{},
	}
	u, err := user.Lookup(o.Owner)
	if err != nil {
		return nil, fmt.Errorf("acme: looking up nginx's worker user %q: %w", o.Owner, err)
	}
	m.uid, _ = strconv.Atoi(u.Uid)
	m.gid, _ = strconv.Atoi(u.Gid)
	var roots *x509.CertPool
	if g.ACME.TrustedRoots != "" {
		pem, err := os.ReadFile(g.ACME.TrustedRoots)
		if err != nil {
			return nil, fmt.Errorf("acme.trusted-roots: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("acme.trusted-roots: no PEM certificate in %s", g.ACME.TrustedRoots)
		}
	}
	if err := m.openShared(o); err != nil {
		return nil, err
	}
	if m.storage == nil {
		dir := filepath.Join(g.Etc(), "acme")
		if err := mkdir(dir, 0o700, -1, -1); err != nil {
			return nil, err
		}
		m.storage = &certmagic.FileStorage{Path: dir}
	}
	if err := mkdir(filepath.Dir(m.dir), 0o755, -1, -1); err != nil {
		return nil, err
	}
	if err := mkdir(m.dir, 0o700, m.uid, m.gid); err != nil {
		return nil, err
	}
	if err := m.writeFallback(); err != nil {
		return nil, err
	}
	if err := m.listen(); err != nil {
		return nil, err
	}

	zl := zapLogger(m.log)
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: m.renewCheck(o.RenewCheck),
		Logger:             zl,
	})
	m.magic = certmagic.New(m.cache, certmagic.Config{
		Storage: m.storage,
		OnEvent: m.onEvent,
		Logger:  zl,
		// nginx does not staple here, and Let's Encrypt ended OCSP.
		OCSP: certmagic.OCSPConfig{DisableStapling: true},
		// nginx opens a host's file twice per handshake (chain, then
		// key): a renewal that kept the key cannot mismatch the two.
		ReusePrivateKeys: true,
	})
	m.issuer = certmagic.NewACMEIssuer(m.magic, certmagic.ACMEIssuer{
		CA:     g.ACME.Directory,
		Email:  g.ACME.Email,
		Agreed: true, // configuring a CA is agreeing to its terms
		// nginx proxies the challenge to us, so certmagic must not bind
		// port 80: it finds ListenHost:AltHTTPPort taken (by our own
		// listener) and leaves the answering to HandleHTTPChallenge.
		ListenHost:              "127.0.0.1",
		AltHTTPPort:             m.tcp.Addr().(*net.TCPAddr).Port,
		DisableTLSALPNChallenge: true,
		TrustedRoots:            roots,
		Logger:                  zl,
	})
	m.magic.Issuers = []certmagic.Issuer{m.issuer}
	return m, nil
}

// Dir holds HOST.pem per host; Fallback is the certificate for names
// without one; Socket is the HTTP-01 responder's unix socket.
func (m *Manager) Dir() string      { return m.dir }
func (m *Manager) Fallback() string { return m.fallback }
func (m *Manager) Socket() string   { return m.socket }

// Changes signals that a host got its first certificate; what nginx
// serves for requires-secure hosts may have to change.
func (m *Manager) Changes() <-chan struct{} { return m.changed }

// Run answers HTTP-01 challenges and starts and stops certmagic's work
// for the hosts Ensure names, until ctx ends; then it stops everything
// it started.
func (m *Manager) Run(ctx context.Context) error {
	srv := &http.Server{Handler: http.HandlerFunc(m.serveChallenge), ReadHeaderTimeout: 10 * time.Second}
	var wg sync.WaitGroup
	for _, l := range []net.Listener{m.unix, m.tcp} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				m.log.Error("ACME challenge responder stopped", "addr", l.Addr().String(), "err", err)
			}
		}()
	}
	if m.shared > 0 {
		wg.Add(1)
		go func() { defer wg.Done(); m.watch(ctx) }()
	}
	defer func() {
		srv.Close()
		wg.Wait()
		os.Remove(m.socket)
		m.mu.Lock()
		for _, st := range m.hosts {
			if st.cancel != nil {
				st.cancel()
				st.cancel = nil
			}
		}
		m.mu.Unlock()
		m.cache.Stop()
		if m.closeStorage != nil {
			m.closeStorage()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-m.kick:
			m.reconcile(ctx)
		}
	}
}

// Ensure gives every host its file: a temporary certificate until the
// CA's arrives. It asks the CA nothing: nginx must first serve the
// hosts' challenges (Serving).
func (m *Manager) Ensure(_ context.Context, hosts []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, h := range hosts {
		m.host(h)
		if _, err := os.Stat(m.file(h)); errors.Is(err, os.ErrNotExist) {
			if err := m.writeTemporary(h); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Serving says nginx serves these hosts (and their HTTP-01 challenges)
// now: Run starts obtaining certificates for new ones and stops for hosts
// no longer named. Hosts that cannot get one by HTTP-01 keep the
// temporary certificate, logged once.
func (m *Manager) Serving(hosts []string) {
	m.mu.Lock()
	want := map[string]bool{}
	for _, h := range hosts {
		want[h] = true
		if st := m.host(h); st.skip != "" && !m.want[h] {
			m.log.Warn("host cannot get a certificate by HTTP-01; HTTPS serves it a temporary one", "host", h, "reason", st.skip)
		}
	}
	m.want = want
	m.mu.Unlock()
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// Waiting reports a host that will get a certificate but has none yet.
func (m *Manager) Waiting(host string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.host(host)
	if st.skip != "" {
		return false
	}
	m.check(st, host)
	return !time.Now().Before(st.notAfter)
}

// check reads host's certificate once, after a restart, before certmagic
// tells: from storage, or nginx's file if a shared storage is out of
// reach. Callers hold mu.
func (m *Manager) check(st *hostState, host string) {
	if st.checked || st.skip != "" {
		return
	}
	st.checked = true
	var leaf *x509.Certificate
	err := errUnreachable
	if m.storageUp() {
		leaf, _, err = m.stored(context.Background(), host)
	}
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		leaf, err = m.installed(host)
	}
	if err == nil && st.notAfter.IsZero() {
		st.notAfter, st.issuer = leaf.NotAfter, leaf.Issuer.CommonName
	}
}

// host returns host's state, created on first use. Callers hold mu.
func (m *Manager) host(h string) *hostState {
	st := m.hosts[h]
	if st == nil {
		st = &hostState{skip: m.acme.Skip(h)}
		m.hosts[h] = st
	}
	return st
}

// reconcile starts certmagic on wanted hosts and stops it on the others.
func (m *Manager) reconcile(ctx context.Context) {
	var start, stop []string
	ctxs := map[string]context.Context{}
	m.mu.Lock()
	for h, st := range m.hosts {
		switch {
		case m.want[h] && st.skip == "" && st.cancel == nil:
			// certmagic keeps this context for the retries of a first
			// order: cancelling it stops them for a host that left.
			ctxs[h], st.cancel = context.WithCancel(ctx)
			start = append(start, h)
		case !m.want[h] && st.cancel != nil:
			st.cancel()
			st.cancel = nil
			stop = append(stop, h)
		}
	}
	m.mu.Unlock()
	slices.Sort(start)
	if len(start) > 0 {
		m.log.Info("managing certificates", "hosts", start)
	}
	// Outside mu: certmagic loads stored certificates at once and tells
	// onEvent, which takes mu.
	start = m.reachable(ctx, start)
	for _, h := range start {
		if err := m.magic.ManageAsync(ctxs[h], []string{h}); err != nil {
			m.failed(h, false, err)
		}
	}
	if len(stop) > 0 {
		subjects := make([]certmagic.SubjectIssuer, len(stop))
		for i, h := range stop {
			subjects[i] = certmagic.SubjectIssuer{Subject: h}
		}
		m.cache.RemoveManaged(subjects)
		m.log.Info("no longer managing certificates (kept in storage for a return)", "hosts", stop)
	}
}

func (m *Manager) file(host string) string { return filepath.Join(m.dir, host+".pem") }

func (m *Manager) serveChallenge(w http.ResponseWriter, r *http.Request) {
	if !m.issuer.HandleHTTPChallenge(w, r) {
		http.NotFound(w, r)
	}
}

// listen opens the unix socket nginx proxies to and the loopback port
// certmagic believes it would have to bind.
func (m *Manager) listen() error {
	os.Remove(m.socket) // stale from a crash
	l, err := net.Listen("unix", m.socket)
	if err != nil {
		return fmt.Errorf("acme: opening the challenge socket: %w", err)
	}
	// nginx's workers connect as their own user.
	if err := os.Chmod(m.socket, 0o666); err != nil {
		l.Close()
		return fmt.Errorf("acme: opening the challenge socket: %w", err)
	}
	t, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.Close()
		return fmt.Errorf("acme: opening the challenge port: %w", err)
	}
	m.unix, m.tcp = l, t
	return nil
}

func mkdir(dir string, mode os.FileMode, uid, gid int) error {
	if err := os.MkdirAll(dir, mode); err != nil {
		return fmt.Errorf("acme: creating %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("acme: creating %s: %w", dir, err)
	}
	if uid >= 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return fmt.Errorf("acme: creating %s: %w", dir, err)
		}
	}
	return nil
}
