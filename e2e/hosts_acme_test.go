package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"path/filepath"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/internal/testkit/multihost"
)

// TestHostsSharedCertificate: three hosts behind the load balancer share
// acme.storage in the machine's PostgreSQL; Pebble's HTTP-01 validator
// reaches them only through the load balancer. One order for a name, and
// every host serves that certificate; the renewal one host makes, every
// host serves (no other order).
func TestHostsSharedCertificate(t *testing.T) {
	db := testkit.Postgres(t)
	httpPort := testkit.FreePort(t)
	// Short-lived certificates: certmagic renews one at two thirds of its
	// life (or in the CA's ARI window), so the renewal comes on its own.
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: httpPort, Validity: 2 * time.Minute})
	u, err := url.Parse(ca.DirectoryURL())
	if err != nil {
		t.Fatal(err)
	}
	c := startHostsWith(t, multihost.Options{Hosts: 3,
		Listeners: func(h *multihost.Host) string {
			return fmt.Sprintf("  - {host: %s, port: 80}\n  - {host: %s, port: 443, acme: true}\n", h.IP, h.IP)
		},
		KeterYAML: fmt.Sprintf("external-https-port: 443\nacme:\n  email: ops@example.com\n  directory: %s\n  trusted-roots: %s\n  storage: %q\n",
			ca.DirectoryURL(), ca.APIRoot(), db.DSN),
		// keter's test knob (cmd/keter/acme.go): read the shared storage every 2 s.
		KeterEnv: []string{"KETER_TEST_ACME_SHARED_CHECK=2s"},
		Setup: func(c *multihost.Cluster, h *multihost.Host) error {
			// The host reaches Pebble's API and PostgreSQL on its own
			// loopback, as the test process does.
			if err := c.Forward(h.NS, u.Host, multihost.Own, u.Host); err != nil {
				return err
			}
			return c.Forward(h.NS, "127.0.0.1:5432", multihost.Own, "127.0.0.1:5432")
		},
	})
	// Pebble validates http://NAME:httpPort/ with every name on 127.0.0.1:
	// that is the load balancer, which picks any host.
	if err := c.Forward(multihost.Own, fmt.Sprintf("127.0.0.1:%d", httpPort), c.Ops, c.LB); err != nil {
		t.Fatal(err)
	}
	name := "shared-" + testkit.Token() + ".test"
	bundle := filepath.Join(t.TempDir(), "web.keter")
	testkit.DemoBundle(t, bundle, name, "--message", "shared")
	hostsKeter(t, c, true, "deploy", "--hosts", "h1,h2,h3", "--parallel", "3", bundle)

	root, err := ca.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	serve := func(h *multihost.Host) (*x509.Certificate, error) {
		conn, err := c.Dial(t.Context(), "tcp", h.IP+":443")
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		tc := tls.Client(conn, &tls.Config{ServerName: name, RootCAs: pool})
		if err := tc.HandshakeContext(t.Context()); err != nil {
			return nil, fmt.Errorf("%s: %w", h.Name, err)
		}
		return tc.ConnectionState().PeerCertificates[0], nil
	}
	serials := map[string]string{}
	for _, h := range c.Hosts {
		eventually(t, 120*time.Second, func() error {
			cert, err := serve(h)
			if err == nil {
				serials[h.Name] = cert.SerialNumber.String()
			}
			return err
		})
	}
	t.Logf("serials: %v; Pebble issued %d", serials, ca.Issued())
	if serials["h1"] != serials["h2"] || serials["h2"] != serials["h3"] {
		t.Errorf("hosts serve different certificates: %v", serials)
	}
	if n := ca.Issued(); n != 1 {
		t.Errorf("Pebble issued %d certificates, want 1 for %s on 3 hosts", n, name)
	}
	// The renewal: one host renews (the storage's lock), every host
	// serves it within the shared check, without a reload.
	first := serials["h1"]
	t0 := time.Now()
	eventually(t, 150*time.Second, func() error {
		for _, h := range c.Hosts {
			cert, err := serve(h)
			if err != nil {
				return err
			}
			if s := cert.SerialNumber.String(); s == first {
				return fmt.Errorf("%s still serves %s", h.Name, s)
			}
		}
		return nil
	})
	got := map[string]string{}
	for _, h := range c.Hosts {
		cert, err := serve(h)
		if err != nil {
			t.Fatal(err)
		}
		got[h.Name] = cert.SerialNumber.String()
	}
	t.Logf("after %s every host serves a renewal: %v; Pebble issued %d", time.Since(t0).Round(time.Second), got, ca.Issued())
	if got["h1"] != got["h2"] || got["h2"] != got["h3"] {
		t.Errorf("hosts serve different renewals: %v", got)
	}
	if n := ca.Issued(); n != 2 {
		t.Errorf("Pebble issued %d certificates, want 2 (one order, one renewal)", n)
	}
}
