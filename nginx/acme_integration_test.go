package nginx

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

// fakeCerts stands in for the acme package: it writes a certificate
// named after its issuer for each host, as the worker user reads them.
type fakeCerts struct {
	t       testing.TB
	a       ACME
	mu      sync.Mutex
	ready   map[string]bool
	ensured [][]string
	serving [][]string
}

func (f *fakeCerts) Nginx() ACME { return f.a }

func (f *fakeCerts) Ensure(_ context.Context, hosts []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ensured = append(f.ensured, hosts)
	for _, h := range hosts {
		if _, err := os.Stat(filepath.Join(f.a.Dir, h+".pem")); err != nil {
			f.write(h, "temporary")
		}
	}
	return nil
}

func (f *fakeCerts) Serving(hosts []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.serving = append(f.serving, hosts)
}

func (f *fakeCerts) waiting(h string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.ready[h]
}

// write puts a certificate for host from issuer in place by a rename.
func (f *fakeCerts) write(host, issuer string) {
	path := filepath.Join(f.a.Dir, host+".pem")
	if host == "" {
		path = f.a.Fallback
	}
	tmp := path + ".tmp"
	writeOwned(f.t, tmp, combinedPEM(f.t, host, issuer))
	if err := os.Rename(tmp, path); err != nil {
		f.t.Fatal(err)
	}
}

func writeOwned(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	u, err := user.Lookup(workerUser())
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
}

// combinedPEM is a self-signed certificate for host whose issuer and
// subject organisation is issuer, followed by its key.
func combinedPEM(t testing.TB, host, issuer string) []byte {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host, Organization: []string{issuer}},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
}

// TestManagedACME: certificates per host from files nginx reads at each
// handshake, swapped without a reload; HTTP-01 answered on the plain
// listener for every host; requires-secure redirects once ready.
func TestManagedACME(t *testing.T) {
	testkit.NeedSystemd(t)
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	root := testkit.Root(t)
	port, tlsPort := testkit.FreePort(t), testkit.FreePort(t)
	prefix := filepath.Join(root, "etc", "nginx")
	certs := &fakeCerts{t: t, ready: map[string]bool{}}
	certs.a = ACME{Dir: filepath.Join(prefix, "acme"), Fallback: filepath.Join(prefix, "acme-fallback.pem"),
		Challenge: filepath.Join(prefix, "acme-challenge.sock"), Waiting: certs.waiting}
	if err := os.MkdirAll(certs.a.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	certs.write("", "fallback")

	// keter's challenge responder: answers the token with the host.
	ln, err := net.Listen("unix", certs.a.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(certs.a.Challenge, 0o666)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "challenge %s for %s", strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/"), r.Host)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	g, _, err := config.Parse([]byte(fmt.Sprintf(`root: %s
listeners:
  - {host: 127.0.0.1, port: %d}
  - {host: 127.0.0.1, port: %d, acme: true}
external-https-port: %d
acme: {email: ops@example.com}
nginx: {binary: %s}
`, root, port, tlsPort, tlsPort, bin)), root)
	if err != nil {
		t.Fatal(err)
	}
	unit := "keter-nginx-test-" + testkit.Token() + ".service"
	m := New(g, newSDUnits(t), slog.Default(), WithUnitName(unit), WithACME(certs))
	ctx := t.Context()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })

	web := backend(t, "acme")
	secure := webapp("secure.test")
	secure.RequiresSecure = true
	apps := []App{{Name: "acme", Dir: root, Ports: one(map[int]int{0: portOf(t, web), 1: portOf(t, web)}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("shop.test", "www.shop.test"), secure}}}}
	if err := m.Apply(ctx, apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	issuer := func(sni string) (string, error) {
		conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", tlsPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		if err != nil {
			return "", err
		}
		defer conn.Close()
		return conn.ConnectionState().PeerCertificates[0].Subject.Organization[0], nil
	}
	expect := func(sni, want string) {
		t.Helper()
		eventually(t, sni+" serves the "+want+" certificate", func() error {
			got, err := issuer(sni)
			if err != nil || got != want {
				return fmt.Errorf("got %q, %v", got, err)
			}
			return nil
		})
	}
	certs.mu.Lock()
	if n := len(certs.serving); n == 0 || fmt.Sprint(certs.serving[n-1]) != "[secure.test shop.test www.shop.test]" {
		t.Errorf("after Apply the ACME client was told nginx serves %v", certs.serving)
	}
	certs.mu.Unlock()
	expect("shop.test", "temporary")
	expect("www.shop.test", "temporary")
	expect("unknown.test", "fallback")
	expect("", "fallback")

	plain := client(fmt.Sprintf("127.0.0.1:%d", port))
	base := fmt.Sprintf("http://x:%d", port)
	for _, host := range []string{"shop.test", "secure.test", "unknown.test"} {
		a, err := get(plain, base+"/.well-known/acme-challenge/tok-"+host, map[string]string{"Host": host})
		if err != nil || a.status != 200 || a.body != "challenge tok-"+host+" for "+host {
			t.Errorf("challenge for %s: %+v %v", host, a, err)
		}
	}
	// Waiting for its certificate, the requires-secure host serves HTTP.
	if a, err := get(plain, base+"/", map[string]string{"Host": "secure.test"}); err != nil || a.status != 200 {
		t.Fatalf("requires-secure host without a certificate: %+v %v, want 200 over plain HTTP", a, err)
	}

	// The CA's certificates replace the files: no reload.
	reloads := m.Reloads()
	certs.write("shop.test", "ca")
	expect("shop.test", "ca")
	expect("www.shop.test", "temporary")
	certs.write("shop.test", "ca-renewed")
	expect("shop.test", "ca-renewed")
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Reloads() != reloads {
		t.Fatalf("a certificate swap reloaded nginx (%d → %d reloads)", reloads, m.Reloads())
	}

	// The requires-secure host's certificate arrives: one reload, then a
	// redirect, while the challenge still answers.
	certs.write("secure.test", "ca")
	certs.mu.Lock()
	certs.ready["secure.test"] = true
	certs.mu.Unlock()
	if err := m.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if m.Reloads() != reloads+1 {
		t.Fatalf("Refresh after a requires-secure host got its certificate: %d reloads, want %d", m.Reloads(), reloads+1)
	}
	eventually(t, "requires-secure redirects once ready", func() error {
		a, err := get(plain, base+"/p", map[string]string{"Host": "secure.test"})
		if err != nil || a.status != 301 || a.header.Get("Location") != fmt.Sprintf("https://secure.test:%d/p", tlsPort) {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})
	if a, err := get(plain, base+"/.well-known/acme-challenge/again", map[string]string{"Host": "secure.test"}); err != nil || a.status != 200 {
		t.Errorf("challenge on a redirecting host: %+v %v", a, err)
	}
}
