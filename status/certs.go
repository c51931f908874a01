package status

import (
	"context"
	"net/http"
	"time"
)

// Cert is one host's certificate from the ACME CA.
type Cert struct {
	Host  string `json:"host"`
	State string `json:"state"` // valid | obtaining | failed | skipped
	// Issuer is the issuing CA's name; NotAfter the certificate's expiry.
	Issuer      string    `json:"issuer,omitempty"`
	NotAfter    time.Time `json:"not_after,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	Skipped     string    `json:"skipped,omitempty"` // why it cannot get one
}

func (s *Server) certs() []Cert {
	if s.o.Certs == nil {
		return nil
	}
	return s.o.Certs()
}

// certsOf picks an app's hosts from all certificates.
func certsOf(all map[string]Cert, hosts []string) []Cert {
	var out []Cert
	for _, h := range hosts {
		if c, ok := all[h]; ok {
			out = append(out, c)
		}
	}
	return out
}

func (s *Server) listCerts(w http.ResponseWriter, r *http.Request) {
	cs := s.certs()
	if cs == nil {
		cs = []Cert{}
	}
	writeJSON(w, http.StatusOK, cs)
}

// Certs lists every host's certificate from the ACME CA.
func (c *Client) Certs(ctx context.Context) ([]Cert, error) {
	var cs []Cert
	return cs, c.do(ctx, "GET", "/api/certs", nil, &cs)
}
