package acme

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
)

// frontDoor stands in for nginx's plain listener: it proxies HTTP-01
// to the manager's socket, as the rendered config does.
func frontDoor(t testing.TB, port int, socket string) {
	t.Helper()
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.Out.URL.Scheme, r.Out.URL.Host = "http", "acme"
			r.Out.Host = r.In.Host
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		}},
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/.well-known/acme-challenge/") {
			http.NotFound(w, r)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

// running starts a Manager on root and stops it when the test ends or
// stop is called.
func running(t *testing.T, root string, ca *pebble.Server) (m *Manager, stop func()) {
	t.Helper()
	m, err := New(Options{Config: testConfig(t, root, ca.DirectoryURL(), ca.APIRoot()), Owner: owner,
		Log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})), RenewCheck: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); m.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return m, stop
}

func waitFor(t *testing.T, within time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %s: %v", what, within, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// verified checks host's file holds a chain that verifies against root.
func verified(path, host string, root *x509.Certificate) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for rest := data; ; {
		c, r, ok := nextCert(rest)
		if !ok {
			break
		}
		certs, rest = append(certs, c), r
	}
	if len(certs) == 0 {
		return nil, fmt.Errorf("%s: no certificate", path)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	_, err = certs[0].Verify(x509.VerifyOptions{DNSName: host, Roots: roots, Intermediates: inter})
	return certs[0], err
}

// TestPebble: a first certificate by real HTTP-01 validation, stored
// with private modes; a new Manager on the same root (a keter restart)
// orders nothing; a host whose challenge cannot succeed shows why.
func TestPebble(t *testing.T) {
	needRoot(t)
	root := testkit.Root(t)
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	host, broken := "shop-"+testkit.Token()+".test", "broken-"+testkit.Token()+".test"
	if err := ca.Resolve(t.Context(), broken, "127.0.0.2"); err != nil {
		t.Fatal(err)
	}

	m, stop := running(t, root, ca)
	frontDoor(t, port, m.Socket())
	if err := m.Ensure(t.Context(), []string{host, broken}); err != nil {
		t.Fatal(err)
	}
	m.Serving([]string{host, broken})
	caRoot, err := ca.Root(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(m.Dir(), host+".pem")
	waitFor(t, 60*time.Second, "the CA's certificate in nginx's file", func() error {
		_, err := verified(path, host, caRoot)
		return err
	})
	select {
	case <-m.Changes():
	case <-time.After(5 * time.Second):
		t.Error("no change signalled for the first certificate")
	}
	if m.Waiting(host) {
		t.Error("Waiting after the certificate arrived")
	}
	checkMode(t, path, 0o600, m.uid)
	filepath.Walk(filepath.Join(root, "etc", "acme"), func(p string, fi os.FileInfo, err error) error {
		switch {
		case err != nil:
			t.Error(err)
		case fi.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("storage folder %s: mode %v, want 0700", p, fi.Mode().Perm())
		case strings.HasSuffix(p, ".key") && fi.Mode().Perm() != 0o600:
			t.Errorf("storage key %s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		return nil
	})
	waitFor(t, 60*time.Second, "the broken host's failure in status", func() error {
		for _, h := range m.Status() {
			if h.Host == broken && h.State == StateFailed && h.LastError != "" {
				return nil
			}
			if h.Host == host && (h.State != StateValid || h.NotAfter.IsZero() || h.Issuer == "") {
				return fmt.Errorf("status of %s: %+v", host, h)
			}
		}
		return fmt.Errorf("status %+v", m.Status())
	})
	if c := leafOf(t, filepath.Join(m.Dir(), broken+".pem")); c.Subject.Organization[0] != TemporaryOrg {
		t.Errorf("the broken host serves %v, want the temporary certificate", c.Subject)
	}
	t.Logf("broken host: %+v", m.Status()[0])

	// Restart: the stored certificate is used as it is.
	issued := ca.Issued()
	stop()
	before, _ := os.ReadFile(path)
	m2, _ := running(t, root, ca)
	if m2.Waiting(host) {
		t.Error("after a restart the stored certificate is not seen before certmagic loads it")
	}
	if err := m2.Ensure(t.Context(), []string{host}); err != nil {
		t.Fatal(err)
	}
	m2.Serving([]string{host})
	waitFor(t, 30*time.Second, "the stored certificate in status", func() error {
		if s := m2.Status(); len(s) != 1 || s[0].State != StateValid {
			return fmt.Errorf("%+v", s)
		}
		return nil
	})
	time.Sleep(2 * time.Second) // an order, if any, would be under way
	if got := ca.Issued(); got != issued {
		t.Errorf("a restart ordered %d new certificates", got-issued)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Error("a restart replaced nginx's certificate file")
	}
}

func nextCert(data []byte) (*x509.Certificate, []byte, bool) {
	for {
		b, rest := pemDecode(data)
		if b == nil {
			return nil, nil, false
		}
		data = rest
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			return c, rest, err == nil
		}
	}
}

func pemDecode(data []byte) (*pem.Block, []byte) { return pem.Decode(data) }
