package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/acme"
	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/status"
)

// acmeKeter is a keter with a plain listener (where Pebble validates
// HTTP-01) and an acme: true TLS listener, talking to ca.
type acmeKeter struct {
	*keter
	TLSPort    int
	StatusPort int
	ca         *pebble.Server
}

// startACMEKeter starts keter on port (Pebble's HTTP-01 port) with ca
// as its ACME directory; env goes to keter's unit.
func startACMEKeter(t *testing.T, port int, ca *pebble.Server, env ...string) *acmeKeter {
	t.Helper()
	return startACMEKeterWith(t, port, ca, "", env...)
}

// startACMEKeterWith adds acmeKeys (indented YAML lines) to the acme key.
func startACMEKeterWith(t *testing.T, port int, ca *pebble.Server, acmeKeys string, env ...string) *acmeKeter {
	t.Helper()
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	tok := testkit.Token()
	k := &acmeKeter{keter: &keter{t: t, Root: testkit.Root(t), Port: port, Unit: "keter-e2e-" + tok + ".service",
		Nginx: "keter-nginx-" + tok + ".service", Table: "kt_" + tok}, TLSPort: testkit.FreePort(t), StatusPort: testkit.FreePort(t), ca: ca}
	cfg := fmt.Sprintf(`root: %s
listeners:
  - {host: 127.0.0.1, port: %d}
  - {host: 127.0.0.1, port: %d, acme: true}
external-https-port: %d
graceful-drain-micros: 1000000
acme:
  email: ops@example.com
  directory: %s
  trusted-roots: %s
%sstatus:
  listen: 127.0.0.1:%d
# Outside Keter's default ranges: keters of other test runs on this host
# map those front ports in their own nftables tables, which see our
# connections too.
port-manager:
  ranges: [{from: 47000, to: 47199}]
nginx:
  mode: managed
  binary: %s
  service: %s
  nft-table: %s
`, k.Root, port, k.TLSPort, k.TLSPort, ca.DirectoryURL(), ca.APIRoot(), acmeKeys, k.StatusPort, nginxBin, k.Nginx, k.Table)
	keterBinary(t)
	if err := os.WriteFile(k.config(), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.cleanup)
	k.start(env...)
	return k
}

// deploy drops a stanza-format bundle running the demo app; yaml is the
// keter.yaml, with the demo app at ../bin/demoapp and a static/ folder.
func (k *acmeKeter) deploy(name, yaml string) {
	k.t.Helper()
	bin, err := os.ReadFile(testkit.DemoApp(k.t))
	if err != nil {
		k.t.Fatal(err)
	}
	src := filepath.Join(k.Root, "."+name+".src")
	testkit.Bundle(k.t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(yaml)},
		"bin/demoapp":       {Body: bin, Mode: 0o755},
		"static/index.html": {Body: []byte("static " + name + "\n")},
	})
	k.Drop(src, name+".keter")
}

// https is a client that reaches keter's TLS listener for any host and
// trusts only roots: every handshake is a new one (no keep-alive).
func (k *acmeKeter) https(roots *x509.CertPool) *http.Client {
	return &http.Client{Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", k.TLSPort))
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: true,
			DisableKeepAlives: true,
		}}
}

// peer is the certificate keter's TLS listener shows for sni, unverified.
func (k *acmeKeter) peer(sni string) (*x509.Certificate, error) {
	conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", k.TLSPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// caRoots is the pool of Pebble's current issuing root.
func (k *acmeKeter) caRoots() *x509.CertPool {
	k.t.Helper()
	root, err := k.ca.Root(k.t.Context())
	if err != nil {
		k.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return pool
}

// certs reads every host's certificate status from keter's socket.
func (k *acmeKeter) certs() map[string]status.Cert {
	k.t.Helper()
	cs, err := status.NewClient(filepath.Join(k.Root, "etc", "keter.sock")).Certs(k.t.Context())
	if err != nil {
		k.t.Fatal(err)
	}
	m := map[string]status.Cert{}
	for _, c := range cs {
		m[c.Host] = c
	}
	return m
}

// getTLS fetches https://host/path with c and returns status and body.
func getTLS(c *http.Client, host, path string) (*http.Response, string, error) {
	resp, err := c.Get("https://" + host + path)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(b)), err
}

func metric(t *testing.T, base, name string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(httpGet(t, base+"/metrics"))
	if m == nil {
		return ""
	}
	return m[1]
}

// TestACMECertificates: a first deploy gets, in the background, a
// certificate per host of every stanza type from Pebble by real HTTP-01
// through nginx, served with a chain that verifies, over HTTP/2;
// requires-secure redirects once its certificate is in place; APPROOT
// says https; status, the CLI and /metrics show each certificate. A keter
// restart and a redeploy order nothing.
func TestACMECertificates(t *testing.T) {
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	k := startACMEKeter(t, port, ca)
	tok := testkit.Token()
	web, extra, static, redirect, rp := "web-"+tok+".test", "www-"+tok+".test", "static-"+tok+".test", "old-"+tok+".test", "rp-"+tok+".test"
	bundle := func(msg string) string {
		return fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, %q]
    hosts: [%s, %s]
  - type: static-files
    host: %s
    root: ../static
    requires-secure: true
  - type: redirect
    host: %s
    actions: [{host: %s, secure: true}]
  - type: reverse-proxy
    reversing-host: %s
    reversed-host: 127.0.0.1
    reversed-port: %d
`, msg, web, extra, static, redirect, web, rp, port)
	}
	k.deploy("shop", bundle("v1"))
	k.WaitBody(web, "v1", 60*time.Second)

	roots := k.caRoots()
	c := k.https(roots)
	eventually(t, 60*time.Second, func() error {
		for _, h := range []string{web, extra, static, redirect, rp} {
			if _, _, err := getTLS(c, h, "/"); err != nil {
				return fmt.Errorf("%s: %w", h, err)
			}
		}
		return nil
	})
	resp, body, err := getTLS(c, web, "/")
	if err != nil || resp.StatusCode != 200 || body != "v1" || resp.ProtoMajor != 2 {
		t.Fatalf("https://%s/: %v %q %v, want 200 v1 over HTTP/2", web, resp, body, err)
	}
	if _, approot, _ := getTLS(c, web, "/env/APPROOT"); approot != fmt.Sprintf("https://%s:%d", web, k.TLSPort) {
		t.Errorf("APPROOT %q, want https", approot)
	}
	if resp, body, _ := getTLS(c, static, "/"); resp == nil || body != "static shop" {
		t.Errorf("https://%s/: %q", static, body)
	}
	eventually(t, 30*time.Second, func() error {
		code, _, err := k.Get(static, "/")
		if err != nil || code != 301 {
			return fmt.Errorf("requires-secure over plain HTTP: %d %v, want 301 once the certificate is in place", code, err)
		}
		return nil
	})
	if code, body, _ := k.Get(web, "/"); code != 200 || body != "v1" {
		t.Errorf("plain HTTP stopped working: %d %q", code, body)
	}

	certs := k.certs()
	for _, h := range []string{web, extra, static, redirect, rp} {
		if c := certs[h]; c.State != acme.StateValid || !strings.HasPrefix(c.Issuer, "Pebble Intermediate") || time.Until(c.NotAfter) < 24*time.Hour {
			t.Errorf("status of %s: %+v", h, c)
		}
	}
	out, _ := mustCLI(t, 0, "status", "-c", k.config())
	if !strings.Contains(out, "certificates (ACME):") || !strings.Contains(out, web+"  ") || !strings.Contains(out, "Pebble Intermediate") {
		t.Errorf("keter status lacks the certificates:\n%s", out)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", k.StatusPort)
	if v := metric(t, base, fmt.Sprintf(`keter_certificate_expiry_timestamp_seconds{host=%q}`, web)); v != fmt.Sprint(certs[web].NotAfter.Unix()) {
		t.Errorf("/metrics expiry of %s = %q, want %d", web, v, certs[web].NotAfter.Unix())
	}

	// Restart and redeploy: the stored certificates are used as they are.
	issued := ca.Issued()
	if issued != 5 {
		t.Errorf("Pebble issued %d certificates for 5 hosts", issued)
	}
	asked := strings.Count(k.Log(), "asking the CA for a certificate")
	k.restart()
	eventually(t, 30*time.Second, func() error {
		for _, h := range []string{web, extra, static, redirect, rp} {
			if c := k.certs()[h]; c.State != acme.StateValid {
				return fmt.Errorf("after restart %s is %+v", h, c)
			}
		}
		return nil
	})
	k.deploy("shop", bundle("v2"))
	k.WaitBody(web, "v2", 60*time.Second)
	// nginx's kept connections to v1 may answer for a moment after the
	// switch (bounded: keepalive_time), so HTTPS may still say v1 once.
	eventually(t, 10*time.Second, func() error {
		if _, body, err := getTLS(c, web, "/"); err != nil || body != "v2" {
			return fmt.Errorf("https after the redeploy: %q %v", body, err)
		}
		return nil
	})
	if got := ca.Issued(); got != issued {
		t.Errorf("a restart and a redeploy ordered %d certificates, want none", got-issued)
	}
	if got := strings.Count(k.Log(), "asking the CA for a certificate"); got != asked {
		t.Errorf("keter asked the CA %d more times after the restart, want none", got-asked)
	}
}

// TestACMEChallengeFails: a host whose HTTP-01 challenge cannot succeed
// keeps serving HTTP, gets a temporary certificate over HTTPS, does not
// redirect although requires-secure, and status says why; the other host
// of the same app gets its certificate.
func TestACMEChallengeFails(t *testing.T) {
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	k := startACMEKeter(t, port, ca)
	tok := testkit.Token()
	good, broken := "good-"+tok+".test", "broken-"+tok+".test"
	// Pebble's validator connects to 127.0.0.2, where nothing listens.
	if err := ca.Resolve(t.Context(), broken, "127.0.0.2"); err != nil {
		t.Fatal(err)
	}
	k.deploy("mixed", fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, ok]
    hosts: [%s]
  - type: static-files
    host: %s
    root: ../static
    requires-secure: true
`, good, broken))
	k.WaitBody(good, "ok", 60*time.Second)
	eventually(t, 60*time.Second, func() error {
		c := k.certs()[broken]
		if c.State != acme.StateFailed || !strings.Contains(c.LastError, "127.0.0.2") {
			return fmt.Errorf("status of %s: %+v", broken, c)
		}
		if g := k.certs()[good]; g.State != acme.StateValid {
			return fmt.Errorf("status of %s: %+v", good, g)
		}
		return nil
	})
	if code, body, err := k.Get(broken, "/"); err != nil || code != 200 || body != "static mixed" {
		t.Errorf("plain HTTP of the host without a certificate: %d %q %v, want 200 (no redirect yet)", code, body, err)
	}
	cert, err := k.peer(broken)
	if err != nil || len(cert.Subject.Organization) == 0 || cert.Subject.Organization[0] != acme.TemporaryOrg {
		t.Errorf("HTTPS of %s: %v %v, want the temporary certificate", broken, cert, err)
	}
	if !strings.Contains(k.Log(), "getting a certificate failed; retrying with backoff") {
		t.Error("keter's log does not say the order failed")
	}
	out, _ := mustCLI(t, 0, "status", "-c", k.config(), "mixed")
	if !strings.Contains(out, broken+"  failed") || !strings.Contains(out, "last error") {
		t.Errorf("keter status APP lacks the failure:\n%s", out)
	}
}

// TestACMERenewal: certificates living 40 s are renewed before they
// expire, keeping their key, with no nginx reload and no failed handshake
// or request.
func TestACMERenewal(t *testing.T) {
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port, Validity: 40 * time.Second})
	k := startACMEKeter(t, port, ca, "KETER_TEST_ACME_RENEW_CHECK=1s")
	host := "renew-" + testkit.Token() + ".test"
	k.deploy("renew", fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, renewed]\n    hosts: [%s]\n", host))
	k.WaitBody(host, "renewed", 60*time.Second)
	c := k.https(k.caRoots())
	eventually(t, 60*time.Second, func() error { _, _, err := getTLS(c, host, "/"); return err })
	first, err := k.peer(host)
	if err != nil {
		t.Fatal(err)
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", k.StatusPort)
	reloads := metric(t, base, "keter_nginx_reloads_total")

	// New TLS connections all along, verified against Pebble's root.
	ctx, cancel := context.WithCancel(t.Context())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if resp, body, err := getTLS(c, host, "/"); err == nil && resp.StatusCode == 200 && body == "renewed" {
					ok.Add(1)
				} else if ctx.Err() == nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%v %q", err, body))
				}
			}
		}()
	}
	var serials []string
	eventually(t, 90*time.Second, func() error {
		cur, err := k.peer(host)
		if err != nil {
			return err
		}
		if len(serials) == 0 || serials[len(serials)-1] != cur.SerialNumber.String() {
			serials = append(serials, cur.SerialNumber.String())
			// nginx reads chain and key by two opens: a renewal keeps
			// the key, so a handshake between them cannot mismatch.
			if !bytes.Equal(cur.RawSubjectPublicKeyInfo, first.RawSubjectPublicKeyInfo) {
				t.Errorf("renewal %s changed the key", cur.SerialNumber)
			}
		}
		// Past the first certificate's expiry, renewed at least twice.
		if time.Now().Before(first.NotAfter.Add(2*time.Second)) || len(serials) < 3 {
			return fmt.Errorf("serials so far %v; first expires %s", serials, first.NotAfter.Format(time.TimeOnly))
		}
		return nil
	})
	cancel()
	wg.Wait()
	t.Logf("renewals: serials %v; requests: %d ok, %d failed", serials, ok.Load(), failed.Load())
	if failed.Load() != 0 || ok.Load() == 0 {
		t.Errorf("%d HTTPS requests failed across renewals (first: %v), %d ok", failed.Load(), firstErr.Load(), ok.Load())
	}
	if got := metric(t, base, "keter_nginx_reloads_total"); got != reloads {
		t.Errorf("renewals reloaded nginx: keter_nginx_reloads_total %s → %s", reloads, got)
	}
}

// TestACMECADown: with the CA unreachable deploys go on, HTTP serves,
// HTTPS answers with a temporary certificate and status names the
// error; once the CA is back, certmagic's retry gets the certificate.
func TestACMECADown(t *testing.T) {
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	ca.Stop()
	k := startACMEKeter(t, port, ca)
	tok := testkit.Token()
	hosts := []string{"one-" + tok + ".test", "two-" + tok + ".test"}
	for i, h := range hosts {
		name := fmt.Sprintf("down%d", i)
		k.deploy(name, fmt.Sprintf("stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    args: [--message, %s]\n    hosts: [%s]\n", name, h))
		k.WaitBody(h, name, 60*time.Second)
		cert, err := k.peer(h)
		if err != nil || cert.Subject.Organization[0] != acme.TemporaryOrg {
			t.Fatalf("HTTPS of %s while the CA is down: %v %v, want the temporary certificate", h, cert, err)
		}
	}
	eventually(t, 30*time.Second, func() error {
		for _, h := range hosts {
			if c := k.certs()[h]; c.State != acme.StateFailed || !strings.Contains(c.LastError, "connection refused") {
				return fmt.Errorf("status of %s: %+v", h, c)
			}
		}
		return nil
	})
	if err := ca.Restart(t.Context()); err != nil {
		t.Fatal(err)
	}
	c := k.https(k.caRoots())
	// certmagic retries after 1 minute, then 2, 2, 5, ...
	eventually(t, 150*time.Second, func() error {
		for _, h := range hosts {
			if _, _, err := getTLS(c, h, "/"); err != nil {
				return err
			}
		}
		return nil
	})
	for _, h := range hosts {
		if c := k.certs()[h]; c.State != acme.StateValid || c.LastError != "" {
			t.Errorf("status of %s after the CA came back: %+v", h, c)
		}
	}
}
