package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/keter-systemd/keter/acme/pgstore"
)

// DefaultSharedCheck is how often a keter with a shared storage looks
// there for certificates other hosts got or renewed. certmagic alone
// reads the storage for a certificate only when its own copy is due for
// renewal (at a random time inside the CA's ARI window, which differs
// per host), so a renewal another host made could go unserved for days.
const DefaultSharedCheck = time.Minute

// openShared opens the config's acme.storage unless the caller gave a
// storage; either is shared with other keters.
func (m *Manager) openShared(o Options) error {
	if m.storage == nil && m.acme.Storage != "" {
		s, err := pgstore.New(m.acme.Storage, pgstore.Options{Log: m.log.With("storage", "postgres")})
		if err != nil {
			return fmt.Errorf("acme.storage: %w", err)
		}
		m.storage, m.closeStorage = s, s.Close
	}
	if m.storage == nil {
		return nil
	}
	m.shared = o.SharedCheck
	if m.shared <= 0 {
		m.shared = DefaultSharedCheck
	}
	return nil
}

// renewCheck is certmagic's maintenance interval: with a shared storage
// no longer than SharedCheck, so a renewal due on every host is made by
// one of them (certmagic locks and looks in storage first) and loaded by
// the others on their next check.
func (m *Manager) renewCheck(asked time.Duration) time.Duration {
	if m.shared > 0 && (asked <= 0 || asked > m.shared) {
		return m.shared
	}
	return asked
}

// watch checks the shared storage every m.shared until ctx ends.
func (m *Manager) watch(ctx context.Context) {
	t := time.NewTicker(m.shared)
	defer t.Stop()
	for {
		m.checkShared(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

type pinger interface {
	Ping(ctx context.Context) error
}

// checkShared notes whether the storage answers, retries hosts that
// waited for it, and gives nginx the certificates other hosts put there.
func (m *Manager) checkShared(ctx context.Context) {
	if p, ok := m.storage.(pinger); ok {
		if err := p.Ping(ctx); err != nil {
			return // reported by StorageStatus; nginx's files keep serving
		}
	}
	var managed []string
	pending := false
	m.mu.Lock()
	for h, st := range m.hosts {
		switch {
		case st.cancel != nil:
			managed = append(managed, h)
		case m.want[h] && st.skip == "":
			pending = true
		}
	}
	m.mu.Unlock()
	if pending {
		select {
		case m.kick <- struct{}{}:
		default:
		}
	}
	ik := m.issuer.IssuerKey()
	for _, h := range managed {
		info, err := m.storage.Stat(ctx, certmagic.StorageKeys.SiteCert(ik, h))
		if err != nil {
			continue // none yet, or the storage failed now: next time
		}
		m.mu.Lock()
		st := m.hosts[h]
		same := st == nil || info.Modified.Equal(st.seen)
		m.mu.Unlock()
		if same {
			continue
		}
		m.install(ctx, h, false)
		m.mu.Lock()
		st.seen = info.Modified
		m.mu.Unlock()
	}
}

// reachable returns hosts if the storage answers. Otherwise certmagic
// must not start on them (it would take the error for a missing
// certificate's and give up on the host): they wait for the next
// shared check, and status says why.
func (m *Manager) reachable(ctx context.Context, hosts []string) []string {
	if m.shared == 0 || len(hosts) == 0 {
		return hosts
	}
	_, err := m.storage.Stat(ctx, certmagic.StorageKeys.SiteCert(m.issuer.IssuerKey(), hosts[0]))
	if err == nil || errors.Is(err, fs.ErrNotExist) {
		return hosts
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, h := range hosts {
		st := m.host(h)
		if st.cancel != nil {
			st.cancel()
			st.cancel = nil
		}
		st.lastErr, st.errAt = "certificate storage unreachable, retrying: "+err.Error(), time.Now()
	}
	m.log.Warn("certificate storage unreachable: hosts wait for it", "hosts", hosts, "err", err)
	return nil
}

var errUnreachable = errors.New("certificate storage unreachable")

// storageUp is false once a shared storage was found out of reach, until
// it answers again: readers then go to nginx's files at once instead of
// waiting for connection timeouts.
func (m *Manager) storageUp() bool {
	if s, ok := m.storage.(*pgstore.Store); ok {
		h := s.Health()
		return h.OK || h.Since.IsZero()
	}
	return true
}

// installed is the CA's certificate in nginx's file for host, if any.
func (m *Manager) installed(host string) (*x509.Certificate, error) { return caLeaf(m.file(host)) }

// caLeaf is the first certificate of a file nginx reads, unless it is a
// temporary one.
func caLeaf(path string) (*x509.Certificate, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	c, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, err
	}
	if len(c.Subject.Organization) > 0 && c.Subject.Organization[0] == TemporaryOrg {
		return nil, fmt.Errorf("%s: a temporary certificate", path)
	}
	return c, nil
}

// Storage is where the certificates are kept, as status shows it.
type Storage struct {
	Kind string `json:"kind"` // files | postgres | other
	// Where is the folder, or the database, role and server (never the
	// password).
	Where  string `json:"where"`
	Shared bool   `json:"shared"`
	// Reachable: the last use or check of the storage succeeded.
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // Reachable last changed
	LastOK    time.Time `json:"last_ok,omitzero"`
}

// StorageStatus describes the storage and whether it answers.
func (m *Manager) StorageStatus() Storage {
	switch s := m.storage.(type) {
	case *certmagic.FileStorage:
		dir, _ := filepath.Abs(s.Path)
		return Storage{Kind: "files", Where: dir, Reachable: true}
	case *pgstore.Store:
		h := s.Health()
		return Storage{Kind: "postgres", Where: s.Target(), Shared: true,
			Reachable: h.OK, Error: h.Error, Since: h.Since, LastOK: h.LastOK}
	default:
		return Storage{Kind: "other", Where: fmt.Sprint(s), Shared: true, Reachable: true}
	}
}
