package acme

import (
	"sort"
	"time"
)

// Host states in Status.
const (
	StateValid     = "valid"     // the CA's certificate is in place
	StateObtaining = "obtaining" // asking the CA; a temporary certificate meanwhile
	StateFailed    = "failed"    // the last try failed; retrying with backoff
	StateSkipped   = "skipped"   // cannot get one by HTTP-01: temporary certificate
)

// Host is one host's certificate as status shows it.
type Host struct {
	Host  string `json:"host"`
	State string `json:"state"`
	// Issuer is the issuing CA's name; NotAfter the certificate's expiry.
	Issuer   string    `json:"issuer,omitempty"`
	NotAfter time.Time `json:"not_after,omitzero"`
	// LastError is the last failed order or renewal, cleared by success.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Skipped     string    `json:"skipped,omitempty"`
}

// Status lists every host nginx serves from ACME, sorted.
func (m *Manager) Status() []Host {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Host, 0, len(m.want))
	now := time.Now()
	for h := range m.want {
		st := m.host(h)
		m.check(st, h)
		s := Host{Host: h, LastError: st.lastErr, LastErrorAt: st.errAt, Skipped: st.skip}
		if now.Before(st.notAfter) {
			s.Issuer, s.NotAfter = st.issuer, st.notAfter
		}
		switch {
		case st.skip != "":
			s.State = StateSkipped
		case now.Before(st.notAfter):
			s.State = StateValid
		case st.lastErr != "":
			s.State = StateFailed
		default:
			s.State = StateObtaining
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Host < out[j].Host })
	return out
}
