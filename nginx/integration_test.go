package nginx

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

// front is a managed nginx started for one test.
type front struct {
	m        *Manager
	units    *sdUnits
	g        *config.Config
	root     string
	tlsDir   string
	port     int // plain listener on 127.0.0.1
	tlsPort  int // TLS listener on 127.0.0.1
	unitName string
}

func startFront(t testing.TB, extraYAML string, opts ...Option) *front {
	t.Helper()
	testkit.NeedSystemd(t)
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	root := testkit.Root(t)
	f := &front{root: root, tlsDir: filepath.Join(root, "tls"), port: testkit.FreePort(t), tlsPort: testkit.FreePort(t)}
	writeTestCerts(t, f.tlsDir)
	for name, body := range map[string]string{"unknown.html": "no such app here\n", "missing.html": "say which host\n", "down.html": "the app is down\n"} {
		if err := os.WriteFile(filepath.Join(root, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	y := fmt.Sprintf(`root: %s
listeners:
  - host: 127.0.0.1
    port: %d
  - host: 127.0.0.1
    port: %d
    certificate: %s/cert.pem
    key: %s/key.pem
    chain-certificates: [%s/chain.pem]
external-https-port: %d
unknown-host-response-file: unknown.html
missing-host-response-file: missing.html
proxy-exception-response-file: down.html
healthcheck-path: /keter-health
nginx:
  binary: %s
%s`, root, f.port, f.tlsPort, f.tlsDir, f.tlsDir, f.tlsDir, f.tlsPort, bin, extraYAML)
	g, _, err := config.Parse([]byte(y), root)
	if err != nil {
		t.Fatal(err)
	}
	f.g = g
	if err := os.MkdirAll(g.Hooks(), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range portmap.Hooks() {
		if err := os.WriteFile(filepath.Join(g.Hooks(), name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f.units = newSDUnits(t)
	f.unitName = "keter-nginx-test-" + testkit.Token() + ".service"
	f.m = New(g, f.units, slog.New(slog.NewTextHandler(os.Stderr, nil)), append(opts, WithUnitName(f.unitName))...)
	ctx := t.Context()
	if err := f.m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := f.m.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return f
}

// client sends every request to addr whatever the URL's host says, so
// tests can pick the Host header (and TLS SNI) freely.
func client(addr string) *http.Client {
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:       dial,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

type answer struct {
	status int
	body   string
	header http.Header
	tls    *tls.ConnectionState
}

func get(c *http.Client, url string, hdr map[string]string) (answer, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return answer{}, err
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v // Go sends req.Host, never Header["Host"]
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, string(b), resp.Header, resp.TLS}, err
}

// eventually retries check until it passes: a reload reaches new workers
// a moment after systemd's job ends.
func eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// backend is a webapp stand-in: it reports what it received and echoes
// bytes after a WebSocket-style upgrade.
func backend(t testing.TB, name string) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "websocket" {
			conn, rw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
			rw.Flush()
			io.Copy(conn, rw) // echo
			return
		}
		w.Header().Set("Location", "http://"+r.Host+"/moved")
		fmt.Fprintf(w, "app=%s host=%s path=%s xff=%s proto=%s realip=%s original=%s",
			name, r.Host, r.URL.RequestURI(), r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"),
			r.Header.Get("X-Real-IP"), r.Header.Get("X-Original"))
	}))
	t.Cleanup(s.Close)
	return s
}

func portOf(t testing.TB, s *httptest.Server) int {
	_, p, _ := net.SplitHostPort(s.Listener.Addr().String())
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func writeFile(t testing.TB, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestManagedEveryStanza(t *testing.T) {
	f := startFront(t, "")
	ctx := t.Context()
	plain := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	secure := client(fmt.Sprintf("127.0.0.1:%d", f.tlsPort))
	base := fmt.Sprintf("http://x:%d", f.port)

	// The empty config answers: unknown host, health check.
	eventually(t, "empty config serves the unknown-host page", func() error {
		a, err := get(plain, base+"/", map[string]string{"Host": "nobody.test"})
		if err != nil || a.status != 404 || a.body != "no such app here\n" {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})

	web := backend(t, "web")
	rpPlain := backend(t, "rp")
	rpTLS := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls-backend host=%s", r.Host)
	}))
	t.Cleanup(rpTLS.Close)
	dead := testkit.FreePort(t)

	appDir := filepath.Join(f.root, "temp", "site-1")
	writeFile(t, filepath.Join(appDir, "public", "index.html"), "static index\n")
	writeFile(t, filepath.Join(appDir, "public", "sub", "file.txt"), "a file\n")

	secureStanza := webapp("secure.test")
	secureStanza.RequiresSecure = true
	sniA := webapp("a.test")
	sniA.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: f.tlsDir + "/a.pem", Key: f.tlsDir + "/a.key"}
	sniB := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"b.test"},
		SSL: bundle.SSL{Enabled: true, Certificate: "../../tls/b.pem", Key: f.tlsDir + "/b.key"}}}
	apps := []App{
		{Name: "web", Dir: appDir, Ports: one(map[int]int{0: portOf(t, web), 1: portOf(t, web), 2: dead, 3: portOf(t, web)}),
			Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("web.test", "*.wild.test"), secureStanza, webapp("down.test"), sniA}}},
		{Name: "site", Dir: appDir, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{
			{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"static.test"}, DirectoryListing: true}},
			{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"nolist.test"}}},
			sniB,
		}}},
		{Name: "moves", Dir: appDir, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{
			{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"redirect.test"}, Actions: []bundle.RedirectAction{
				{Path: "/about", URL: "https://new.example.com/about-us"},
				{Host: "new.test", Port: 8080},
			}}},
			{Type: bundle.TypeRedirect, Redirect: &bundle.Redirect{Hosts: []string{"onlypath.test"}, Status: 308, Actions: []bundle.RedirectAction{
				{Path: "/x", Host: "y.test", Secure: true},
			}}},
		}}},
		{Name: "proxies", Dir: appDir, Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{
			{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: portOf(t, rpPlain), ReversingHost: "rp.test",
				RewriteRequest:  []bundle.Rewrite{{Header: "X-Original", From: `^/app/([a-z]+)`, To: `/\1!`}},
				RewriteResponse: []bundle.Rewrite{{Header: "Location", From: `http://127\.0\.0\.1:[0-9]+/`, To: `https://rp.test/`}}}},
			{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: portOf(t, rpTLS), ReversedSSL: true,
				ReversingHost: "rps.test", PreserveHost: true}},
		}}},
	}
	if err := f.m.Apply(ctx, apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if f.m.Reloads() != 1 {
		t.Fatalf("Reloads = %d, want 1", f.m.Reloads())
	}

	type check struct {
		name   string
		c      *http.Client
		url    string
		hdr    map[string]string
		status int
		body   string // substring
		loc    string // exact Location
	}
	tlsBase := fmt.Sprintf("https://x:%d", f.tlsPort)
	checks := []check{
		{"webapp", plain, base + "/p?q=1", map[string]string{"Host": "web.test"}, 200, "app=web host=web.test path=/p?q=1 xff=127.0.0.1 proto=http realip=127.0.0.1", ""},
		{"forged X-Forwarded-For replaced at the edge", plain, base + "/", map[string]string{"Host": "web.test", "X-Forwarded-For": "6.6.6.6"}, 200, "xff=127.0.0.1 proto=http", ""},
		{"webapp case-insensitive", plain, base + "/", map[string]string{"Host": "WEB.Test"}, 200, "app=web", ""},
		{"wildcard one label", plain, base + "/", map[string]string{"Host": "foo.wild.test"}, 200, "app=web host=foo.wild.test", ""},
		{"wildcard two labels", plain, base + "/", map[string]string{"Host": "a.b.wild.test"}, 404, "no such app here", ""},
		{"webapp over TLS", secure, tlsBase + "/", map[string]string{"Host": "web.test"}, 200, "proto=https", ""},
		{"static file", plain, base + "/sub/file.txt", map[string]string{"Host": "static.test"}, 200, "a file", ""},
		{"static index", plain, base + "/", map[string]string{"Host": "static.test"}, 200, "static index", ""},
		{"static listing", plain, base + "/sub/", map[string]string{"Host": "static.test"}, 200, `<a href="file.txt">`, ""},
		{"static no listing", plain, base + "/sub/", map[string]string{"Host": "nolist.test"}, 403, "", ""},
		{"redirect exact path", plain, base + "/about", map[string]string{"Host": "redirect.test"}, 303, "", "https://new.example.com/about-us"},
		{"redirect host keeps path and query", plain, base + "/a/b?c=d", map[string]string{"Host": "redirect.test"}, 303, "", "http://new.test:8080/a/b?c=d"},
		{"redirect secure host", plain, base + "/x?k=v", map[string]string{"Host": "onlypath.test"}, 308, "", "https://y.test/x?k=v"},
		{"redirect no match", plain, base + "/nope", map[string]string{"Host": "onlypath.test"}, 404, "", ""},
		{"reverse proxy", plain, base + "/r", map[string]string{"Host": "rp.test", "X-Original": "/app/abc/def"}, 200,
			fmt.Sprintf("app=rp host=127.0.0.1:%d path=/r", portOf(t, rpPlain)), "https://rp.test/moved"},
		{"reverse proxy request rewrite", plain, base + "/r", map[string]string{"Host": "rp.test", "X-Original": "/app/abc/def"}, 200, "original=/abc!/def", ""},
		{"reverse proxy to TLS, preserve host", plain, base + "/", map[string]string{"Host": "rps.test"}, 200, "tls-backend host=rps.test", ""},
		{"requires-secure", plain, base + "/p?q=1", map[string]string{"Host": "secure.test"}, 301, "", fmt.Sprintf("https://secure.test:%d/p?q=1", f.tlsPort)},
		{"requires-secure over TLS", secure, tlsBase + "/p", map[string]string{"Host": "secure.test"}, 200, "app=web", ""},
		{"proxy exception", plain, base + "/", map[string]string{"Host": "down.test"}, 502, "the app is down", ""},
		{"unknown host", plain, base + "/", map[string]string{"Host": "unknown.test"}, 404, "no such app here", ""},
		{"health check on unknown host", plain, base + "/keter-health", map[string]string{"Host": "unknown.test"}, 200, "doing okay", ""},
		{"health check on an app", plain, base + "/keter-health", map[string]string{"Host": "web.test"}, 200, "doing okay", ""},
		{"health check on requires-secure", plain, base + "/keter-health", map[string]string{"Host": "secure.test"}, 200, "doing okay", ""},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			eventually(t, c.name, func() error {
				a, err := get(c.c, c.url, c.hdr)
				if err != nil {
					return err
				}
				if a.status != c.status || !strings.Contains(a.body, c.body) || (c.loc != "" && a.header.Get("Location") != c.loc) {
					return fmt.Errorf("got %d %q Location %q; want %d %q Location %q", a.status, a.body, a.header.Get("Location"), c.status, c.body, c.loc)
				}
				return nil
			})
		})
	}

	t.Run("SNI", func(t *testing.T) {
		for sni, want := range map[string]string{"a.test": "a.example.com", "b.test": "b.example.com", "web.test": "listener.test"} {
			conn, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.tlsPort), &tls.Config{ServerName: sni, InsecureSkipVerify: true})
			if err != nil {
				t.Fatalf("TLS to %s: %v", sni, err)
			}
			st := conn.ConnectionState()
			conn.Close()
			if got := st.PeerCertificates[0].DNSNames; len(got) == 0 || got[0] != want {
				t.Errorf("SNI %s: certificate for %v, want %s", sni, got, want)
			}
			if st.Version < tls.VersionTLS12 {
				t.Errorf("SNI %s: TLS version %x", sni, st.Version)
			}
			if sni == "web.test" && len(st.PeerCertificates) != 2 {
				t.Errorf("listener chain: %d certificates sent, want 2 (cert + chain)", len(st.PeerCertificates))
			}
		}
		_, err := tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.tlsPort), &tls.Config{ServerName: "a.test", InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
		if err == nil {
			t.Error("TLS 1.1 handshake succeeded")
		}
	})

	t.Run("websocket", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprint(conn, "GET /ws HTTP/1.1\r\nHost: web.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		br := bufio.NewReader(conn)
		status, err := br.ReadString('\n')
		if err != nil || !strings.HasPrefix(status, "HTTP/1.1 101") {
			t.Fatalf("upgrade answer %q %v", status, err)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
		}
		fmt.Fprint(conn, "ping through the tunnel")
		buf := make([]byte, len("ping through the tunnel"))
		if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping through the tunnel" {
			t.Fatalf("echo %q %v", buf, err)
		}
	})

	t.Run("missing host", func(t *testing.T) {
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", f.port))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(30 * time.Second))
		fmt.Fprint(conn, "GET / HTTP/1.0\r\n\r\n")
		b, _ := io.ReadAll(conn)
		if !strings.HasPrefix(string(b), "HTTP/1.1 502") || !strings.HasSuffix(string(b), "say which host\n") {
			t.Fatalf("answer without Host: %q", b)
		}
	})

	t.Run("unchanged state does not reload", func(t *testing.T) {
		before := f.m.Reloads()
		if err := f.m.Apply(ctx, apps); err != nil {
			t.Fatal(err)
		}
		if f.m.Reloads() != before {
			t.Fatalf("Reloads went from %d to %d for the same state", before, f.m.Reloads())
		}
	})

	t.Run("broken config is never applied", func(t *testing.T) {
		confBefore, err := os.ReadFile(f.m.ConfigPath())
		if err != nil {
			t.Fatal(err)
		}
		before := f.m.Reloads()
		bad := webapp("bad.test")
		bad.WebApp.SSL = bundle.SSL{Enabled: true, Certificate: f.tlsDir + "/missing.pem", Key: f.tlsDir + "/missing.key"}
		broken := append(append([]App{}, apps...), App{Name: "bad", Dir: appDir, Ports: one(map[int]int{0: portOf(t, web)}),
			Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{bad}}})
		err = f.m.Apply(ctx, broken)
		if !errors.Is(err, ErrConfigTest) || !strings.Contains(err.Error(), "missing.pem") {
			t.Fatalf("want nginx's refusal naming the missing certificate, got %v", err)
		}
		confAfter, _ := os.ReadFile(f.m.ConfigPath())
		if string(confAfter) != string(confBefore) {
			t.Fatal("the config file changed after a refused Apply")
		}
		if f.m.Reloads() != before {
			t.Fatal("a refused Apply reloaded nginx")
		}
		a, err := get(plain, base+"/", map[string]string{"Host": "web.test"})
		if err != nil || a.status != 200 {
			t.Fatalf("old config no longer serving: %+v %v", a, err)
		}
		leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(f.m.ConfigPath()), ".nginx.conf.new-*"))
		if len(leftovers) != 0 {
			t.Fatalf("temp files left: %v", leftovers)
		}
	})

	t.Run("restarted keter adopts the running nginx", func(t *testing.T) {
		pid := f.units.mainPID(ctx, f.unitName)
		m2 := New(f.g, f.units, slog.Default(), WithUnitName(f.unitName))
		if err := m2.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if got := f.units.mainPID(ctx, f.unitName); pid == 0 || got != pid {
			t.Fatalf("nginx main PID %d before, %d after adopting", pid, got)
		}
		if err := m2.Apply(ctx, apps[:1]); err != nil {
			t.Fatal(err)
		}
		eventually(t, "adopted nginx applies new state", func() error {
			a, err := get(plain, base+"/", map[string]string{"Host": "static.test"})
			if err != nil || a.status != 404 {
				return fmt.Errorf("static.test after removing its app: %+v %v", a, err)
			}
			return nil
		})
	})
}

func TestManagedIPFromHeader(t *testing.T) {
	f := startFront(t, "ip-from-header: true\n")
	web := backend(t, "web")
	apps := []App{{Name: "web", Dir: f.root, Ports: one(map[int]int{0: portOf(t, web)}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("web.test")}}}}
	if err := f.m.Apply(t.Context(), apps); err != nil {
		t.Fatal(err)
	}
	plain := client(fmt.Sprintf("127.0.0.1:%d", f.port))
	eventually(t, "real IP from X-Forwarded-For", func() error {
		a, err := get(plain, fmt.Sprintf("http://x:%d/", f.port), map[string]string{"Host": "web.test", "X-Forwarded-For": "203.0.113.9"})
		if err != nil || !strings.Contains(a.body, "realip=203.0.113.9") || !strings.Contains(a.body, "xff=203.0.113.9, 127.0.0.1 ") {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})

	// Concurrent Applies are serialized: each tests and installs whole.
	two := append(append([]App{}, apps...), App{Name: "two", Dir: f.root, Ports: one(map[int]int{0: portOf(t, web)}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("two.test")}}})
	errs := make(chan error, 8)
	for i := range 8 {
		go func() {
			if i%2 == 0 {
				errs <- f.m.Apply(t.Context(), apps)
			} else {
				errs <- f.m.Apply(t.Context(), two)
			}
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent Apply: %v", err)
		}
	}
	if err := f.m.Apply(t.Context(), two); err != nil {
		t.Fatal(err)
	}
	eventually(t, "last Apply wins", func() error {
		a, err := get(plain, fmt.Sprintf("http://x:%d/", f.port), map[string]string{"Host": "two.test"})
		if err != nil || a.status != 200 {
			return fmt.Errorf("%+v %v", a, err)
		}
		return nil
	})
}
