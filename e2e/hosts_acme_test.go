package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
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
	// Every host serves one certificate, from one order.
	first := converge(t, c, serve, "")
	issues := ca.Issues()
	t.Logf("every host serves %s; Pebble issued %v", first, issues)
	checkOrders(t, issues, first)

	// The renewal: one host renews (the storage's lock), every host
	// serves it within the shared check, without a reload.
	t0 := time.Now()
	renewed := converge(t, c, serve, first)
	issues = ca.Issues()
	t.Logf("after %s every host serves the renewal %s; Pebble issued %v", time.Since(t0).Round(time.Second), renewed, issues)
	checkOrders(t, issues, renewed)
	if len(issues) < 2 {
		t.Errorf("hosts serve %s after %s, but Pebble issued only %v", renewed, first, issues)
	}
}

// converge waits until every host serves one certificate, other than
// not, and returns its serial as Pebble prints it.
func converge(t *testing.T, c *multihost.Cluster, serve func(*multihost.Host) (*x509.Certificate, error), not string) string {
	t.Helper()
	var serial string
	eventually(t, 150*time.Second, func() error {
		got := map[string]string{}
		for _, h := range c.Hosts {
			cert, err := serve(h)
			if err != nil {
				return err
			}
			got[h.Name] = hex.EncodeToString(cert.SerialNumber.Bytes())
		}
		serial = got[c.Hosts[0].Name]
		for _, s := range got {
			if s != serial || s == not {
				return fmt.Errorf("hosts serve %v (waiting for one certificate other than %q)", got, not)
			}
		}
		return nil
	})
	return serial
}

// checkOrders: one order for the name, every other certificate an ARI
// renewal of a different one (two hosts renewing the same certificate
// would be two replacements of it), and serving is one of them. More
// than one renewal is no fault: for a 2-minute certificate Pebble's
// renewal window starts at issuance, so certmagic may pick a time in
// it seconds later.
func checkOrders(t *testing.T, issues []pebble.Issue, serving string) {
	t.Helper()
	orders, replaced, found := 0, map[string]bool{}, false
	for _, is := range issues {
		switch {
		case is.Replaces == "":
			orders++
		case replaced[is.Replaces]:
			t.Errorf("order %s was renewed twice: %v", is.Replaces, issues)
		}
		replaced[is.Replaces] = true
		found = found || is.Serial == serving
	}
	if orders != 1 {
		t.Errorf("%d orders that renew nothing, want 1 for one name on 3 hosts: %v", orders, issues)
	}
	if !found {
		t.Errorf("hosts serve %s, which Pebble did not issue: %v", serving, issues)
	}
}
