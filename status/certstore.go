package status

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// CertStorage is where the ACME account and certificates are kept, and
// whether it answers (a shared PostgreSQL storage may not).
type CertStorage struct {
	Kind string `json:"kind"` // files | postgres | other
	// Where is the folder, or the database, role and server (never the
	// password).
	Where     string    `json:"where"`
	Shared    bool      `json:"shared"`
	Reachable bool      `json:"reachable"`
	Error     string    `json:"error,omitempty"`
	Since     time.Time `json:"since,omitzero"` // Reachable last changed
	LastOK    time.Time `json:"last_ok,omitzero"`
}

func (s *Server) certStorage() *CertStorage {
	if s.o.CertStorage == nil {
		return nil
	}
	cs := s.o.CertStorage()
	return &cs
}

func (s *Server) getCertStorage(w http.ResponseWriter, r *http.Request) {
	cs := s.certStorage()
	if cs == nil {
		writeError(w, http.StatusNotFound, fmt.Errorf("keter runs no ACME client"))
		return
	}
	writeJSON(w, http.StatusOK, cs)
}

// writeCertStorage adds keter_certificate_storage_up to /metrics.
func writeCertStorage(b *bufio.Writer, cs *CertStorage, header func(name, typ, help string)) {
	if cs == nil {
		return
	}
	header("keter_certificate_storage_up", "gauge", "1 while the ACME certificate storage answers (a shared PostgreSQL storage may not; hosts keep serving the certificates they have).")
	up := 0
	if cs.Reachable {
		up = 1
	}
	fmt.Fprintf(b, "keter_certificate_storage_up{kind=%q} %d\n", cs.Kind, up)
}

// CertStorage describes the ACME storage; nil when keter runs no ACME
// client.
func (c *Client) CertStorage(ctx context.Context) (*CertStorage, error) {
	var cs CertStorage
	err := c.do(ctx, "GET", "/api/certs/storage", nil, &cs)
	if ae := (*APIError)(nil); errors.As(err, &ae) && ae.Code == http.StatusNotFound {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &cs, nil
}
