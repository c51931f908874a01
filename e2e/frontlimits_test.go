package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// frontBundle drops a stanza-format bundle: the demo app at bin/demoapp,
// keter.yaml, and files; it waits until keter calls the version live.
func (k *keter) frontBundle(name, yaml string, files map[string]testkit.File) {
	k.t.Helper()
	demo, err := os.ReadFile(testkit.DemoApp(k.t))
	if err != nil {
		k.t.Fatal(err)
	}
	all := map[string]testkit.File{"config/keter.yaml": {Body: []byte(yaml)}, "bin/demoapp": {Body: demo, Mode: 0o755}}
	for p, f := range files {
		all[p] = f
	}
	live := `msg="version live" app=` + name + " "
	before := strings.Count(k.Log(), live)
	src := filepath.Join(k.Root, "."+name+".src")
	testkit.Bundle(k.t, src, all)
	k.Drop(src, name+".keter")
	eventually(k.t, 60*time.Second, func() error {
		if strings.Count(k.Log(), live) == before {
			return fmt.Errorf("keter has not called the new version of %s live", name)
		}
		return nil
	})
}

// rawClient neither follows redirects nor asks for or undoes compression.
var rawClient = &http.Client{
	Timeout:       30 * time.Second,
	Transport:     &http.Transport{DisableCompression: true, TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// send makes one request to url with Host host and the headers given as
// name, value pairs, and returns the answer with its whole body.
func send(method, url, host string, body []byte, headers ...string) (*http.Response, []byte, error) {
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Host = host
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := rawClient.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func (k *keter) url(path string) string { return fmt.Sprintf("http://127.0.0.1:%d%s", k.Port, path) }

// backend is an app of the test's own that reverse-proxy stanzas lead
// to: it echoes what it got and serves what gzip and buffering need.
type backend struct {
	*httptest.Server
	bigCSS, png []byte
	written     atomic.Int64 // bytes /flood has written so far
	flooded     atomic.Bool  // /flood wrote all of it
}

// floodSize is more than the kernel's socket buffers and nginx's own
// in-memory buffers hold between an app and a client that reads nothing.
const floodSize = 64 << 20

func startBackend(t *testing.T) *backend {
	b := &backend{}
	b.bigCSS = bytes.Repeat([]byte(".keter { color: #123456; margin: 0 auto; }\n"), 500)
	b.png = make([]byte, 20000)
	for i := range b.png {
		b.png[i] = byte(i * 7)
	}
	pre := gzipped(t, b.bigCSS)
	mux := http.NewServeMux()
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "xff=%s|xfp=%s|xrip=%s", r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto"), r.Header.Get("X-Real-IP"))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprint(w, n)
	})
	mux.HandleFunc("/big.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Write(b.bigCSS)
	})
	mux.HandleFunc("/tiny.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Write(b.bigCSS[:200])
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(b.png)
	})
	mux.HandleFunc("/pre.css", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/css")
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(pre)
	})
	// /flood writes floodSize bytes as fast as it is let.
	mux.HandleFunc("/flood", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(floodSize))
		if r.URL.Query().Get("accel") == "no" {
			w.Header().Set("X-Accel-Buffering", "no")
		}
		chunk := make([]byte, 64<<10)
		for n := 0; n < floodSize; n += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				return
			}
			b.written.Add(int64(len(chunk)))
		}
		b.flooded.Store(true)
	})
	b.Server = httptest.NewServer(mux)
	t.Cleanup(b.Close)
	return b
}

func (b *backend) port() int { return b.Listener.Addr().(*net.TCPAddr).Port }

func gzipped(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// buffers reports whether nginx took all of /flood from the app while
// its client read nothing (response buffering: nginx spools it to a
// file), or held the app back to the client's pace (no buffering: the
// app's writes stall once the socket buffers between them are full).
func (b *backend) buffers(t *testing.T, url, host string) bool {
	t.Helper()
	b.written.Store(0)
	b.flooded.Store(false)
	req, _ := http.NewRequest("GET", url, nil)
	req.Host = host
	resp, err := rawClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	// Wait until the app has finished or stalled: nothing written for a
	// while, which a buffering nginx never lets happen before the end.
	last, still := int64(-1), 0
	for !b.flooded.Load() && still < 10 {
		time.Sleep(100 * time.Millisecond)
		if n := b.written.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	flooded := b.flooded.Load()
	t.Logf("%s via %s: the app wrote %d of %d bytes before the client read any", url, host, b.written.Load(), floodSize)
	if n, err := io.Copy(io.Discard, resp.Body); err != nil || n != floodSize {
		t.Fatalf("GET %s: read %d bytes, %v", url, n, err)
	}
	return flooded
}

// TestStanzaLimits: max-body-size answers 413 beyond the stanza's own
// limit (and the global 100m elsewhere), connect-timeout gives up on an
// app that does not answer the handshake, response-buffering: false and
// the app's X-Accel-Buffering: no stream, and gzip compresses text (not
// images, tiny or already compressed bodies) unless the stanza says
// gzip: false.
func TestStanzaLimits(t *testing.T) {
	k := startKeter(t, "")
	be := startBackend(t)
	tok := testkit.Token()
	small, rp, stream, hole, plain := "small-"+tok+".test", "rp-"+tok+".test", "stream-"+tok+".test", "hole-"+tok+".test", "nogzip-"+tok+".test"
	holePort := testkit.FreePort(t)
	blackhole(t, "ktbh_"+tok, holePort)
	rpStanza := func(host string, port int, extra string) string {
		return fmt.Sprintf("  - type: reverse-proxy\n    reversing-host: %s\n    reversed-host: 127.0.0.1\n    reversed-port: %d\n%s", host, port, extra)
	}
	k.frontBundle("limits", "stanzas:\n"+
		"  - type: webapp\n    exec: ../bin/demoapp\n    host: "+small+"\n    max-body-size: 1k\n    args: [--message, small]\n"+
		rpStanza(rp, be.port(), "")+
		rpStanza(stream, be.port(), "    response-buffering: false\n")+
		rpStanza(hole, holePort, "    connect-timeout: 1s\n")+
		rpStanza(plain, be.port(), "    gzip: false\n"), nil)

	t.Run("max-body-size", func(t *testing.T) {
		for _, c := range []struct {
			host, path string
			size, want int
		}{{small, "/", 512, 200}, {small, "/", 2048, 413}, {rp, "/upload", 2048, 200}, {rp, "/upload", 1 << 20, 200}} {
			resp, body, err := send("POST", k.url(c.path), c.host, make([]byte, c.size))
			if err != nil || resp.StatusCode != c.want {
				t.Errorf("POST %d bytes to %s: %v %v %q, want %d", c.size, c.host, resp, err, body, c.want)
			}
		}
	})

	t.Run("connect-timeout", func(t *testing.T) {
		// nginx's default is 60 s, past the client's 30 s.
		resp, _, err := send("GET", k.url("/"), hole, nil)
		if err != nil || resp.StatusCode != 504 {
			t.Fatalf("an app that never answers the handshake: %v %v, want 504 after the stanza's 1s", resp, err)
		}
	})

	t.Run("buffering", func(t *testing.T) {
		if !be.buffers(t, k.url("/flood"), rp) {
			t.Error("by default nginx should take the whole response from the app, buffering it")
		}
		if be.buffers(t, k.url("/flood"), stream) {
			t.Error("response-buffering: false: nginx still buffered the whole response")
		}
		if be.buffers(t, k.url("/flood?accel=no"), rp) {
			t.Error("X-Accel-Buffering: no from the app: nginx still buffered the whole response")
		}
	})

	t.Run("gzip", func(t *testing.T) {
		get := func(host, path string, gz bool) (*http.Response, []byte) {
			t.Helper()
			var h []string
			if gz {
				h = []string{"Accept-Encoding", "gzip"}
			}
			resp, body, err := send("GET", k.url(path), host, nil, h...)
			if err != nil || resp.StatusCode != 200 {
				t.Fatalf("GET %s%s: %v %v", host, path, resp, err)
			}
			return resp, body
		}
		resp, body := get(rp, "/big.css", true)
		if resp.Header.Get("Content-Encoding") != "gzip" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
			t.Fatalf("big text: Content-Encoding %q Vary %q, want gzip and Accept-Encoding", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := io.ReadAll(zr); err != nil || !bytes.Equal(got, be.bigCSS) {
			t.Fatalf("the gzipped body does not unpack to the app's: %v", err)
		}
		t.Logf("text/css: %d bytes sent for %d", len(body), len(be.bigCSS))
		for _, c := range []struct {
			what, host, path string
			gz               bool
		}{
			{"no Accept-Encoding", rp, "/big.css", false},
			{"a tiny body", rp, "/tiny.css", true},
			{"an image", rp, "/img.png", true},
			{"gzip: false", plain, "/big.css", true},
		} {
			resp, body := get(c.host, c.path, c.gz)
			if ce := resp.Header.Get("Content-Encoding"); ce != "" {
				t.Errorf("%s: Content-Encoding %q, want none (%d bytes)", c.what, ce, len(body))
			}
		}
		resp, body = get(rp, "/pre.css", true)
		if zr, err := gzip.NewReader(bytes.NewReader(body)); err != nil || resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("an app's own gzip: %v %q", err, resp.Header.Get("Content-Encoding"))
		} else if got, _ := io.ReadAll(zr); !bytes.Equal(got, be.bigCSS) {
			t.Fatal("an app's own gzip was compressed twice")
		}
	})
}

// blackhole drops every connection attempt to 127.0.0.1:port, in an
// nftables table of the test's own: an app that never answers.
func blackhole(t *testing.T, table string, port int) {
	t.Helper()
	rules := fmt.Sprintf("table inet %s {\n chain out {\n  type filter hook output priority 0; policy accept;\n  ip daddr 127.0.0.1 tcp dport %d drop\n }\n}\n", table, port)
	cmd := exec.Command("nft", "-f", "-")
	cmd.Stdin = strings.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("nft", "delete", "table", "inet", table).Run() })
}

// TestBundleErrorPages: a bundle's config/errors pages answer for its
// hosts when the app is down (502) or too slow (504), those of the live
// version, across redeploys that reload nothing; maintenance comes
// first; without pages the global proxy-exception-response-file answers;
// a page that is a link is not served.
func TestBundleErrorPages(t *testing.T) {
	root := testkit.Root(t)
	global := filepath.Join(root, "down.html")
	if err := os.WriteFile(global, []byte("<p>operator page</p>"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := startKeter(t, "proxy-exception-response-file: "+global+"\n")
	host := "errors-" + testkit.Token() + ".test"
	const name = "errpages"
	yaml := "stanzas:\n  - type: webapp\n    exec: ../bin/demoapp\n    host: " + host + "\n    connection-time-bound: 1000000\n    args: [--message, %s]\n"
	pages := func(v string) map[string]testkit.File {
		return map[string]testkit.File{
			"config/errors/502.html": {Body: []byte("<p>bundle 502 " + v + "</p>")},
			"config/errors/503.html": {Body: []byte("<p>bundle 503 " + v + "</p>")},
			"config/errors/504.html": {Body: []byte("<p>bundle 504 " + v + "</p>")},
		}
	}
	mustAnswer := func(when, path string, code int, page string) {
		t.Helper()
		eventually(t, 15*time.Second, func() error {
			resp, body, err := send("GET", k.url(path), host, nil)
			if err != nil {
				return err
			}
			if resp.StatusCode != code || !strings.Contains(string(body), page) {
				return fmt.Errorf("%s: %d %q, want %d with %q", when, resp.StatusCode, body, code, page)
			}
			if code >= 500 && !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
				return fmt.Errorf("%s: Content-Type %q", when, resp.Header.Get("Content-Type"))
			}
			return nil
		})
	}
	stopApp := func() {
		t.Helper()
		for _, u := range activeAppUnits(t) {
			if strings.HasPrefix(u, "keter-app-"+name+"-") {
				run(t, "systemctl", "stop", u)
			}
		}
	}

	k.frontBundle(name, fmt.Sprintf(yaml, "v1"), pages("v1"))
	mustAnswer("v1 up", "/", 200, "v1")
	mustAnswer("v1 too slow", "/sleep?ms=3000", 504, "bundle 504 v1")
	reloads := nginxReloads(t, k)

	k.frontBundle(name, fmt.Sprintf(yaml, "v2"), pages("v2"))
	mustAnswer("v2 up", "/", 200, "v2")
	mustAnswer("v2 too slow", "/sleep?ms=3000", 504, "bundle 504 v2")
	mustCLI(t, 0, "maintenance", "on", name, "-c", k.config())
	mustAnswer("v2 in maintenance", "/", 503, "Down for maintenance")
	mustCLI(t, 0, "maintenance", "off", name, "-c", k.config())
	mustAnswer("v2 out of maintenance", "/", 200, "v2")
	stopApp()
	mustAnswer("v2 down", "/", 502, "bundle 502 v2")

	// v3 ships no pages, and a link where 502.html was.
	k.frontBundle(name, fmt.Sprintf(yaml, "v3"), map[string]testkit.File{
		"config/errors/502.html": {Type: '2', Linkname: "../keter.yaml"},
	})
	mustAnswer("v3 up", "/", 200, "v3")
	mustAnswer("v3 too slow", "/sleep?ms=3000", 504, "operator page")
	stopApp()
	mustAnswer("v3 down", "/", 502, "operator page")
	if n := nginxReloads(t, k); n != reloads {
		t.Errorf("nginx reloaded %d times across two redeploys and maintenance, want 0", n-reloads)
	}
	if _, err := os.Stat(filepath.Join(k.Root, "etc", "errors", name, "502.html")); !os.IsNotExist(err) {
		t.Errorf("v3's linked 502.html was copied: %v", err)
	}
	if !strings.Contains(k.Log(), "not serving the bundle's error page") {
		t.Error("keter did not say why it serves no 502 page of v3")
	}
}

// TestTrustedProxies: behind a TLS-terminating nginx listed in
// trusted-proxies (the test runs it, on loopback, connecting from
// 127.0.0.2), a requires-secure site answers rather than redirecting in a
// loop, and the app gets the client's address and scheme; a plain
// request through that proxy is redirected; the same headers from any
// other address are overwritten.
func TestTrustedProxies(t *testing.T) {
	k := startKeter(t, "trusted-proxies: [127.0.0.2]\n")
	be := startBackend(t)
	tok := testkit.Token()
	secure, open := "secure-"+tok+".test", "open-"+tok+".test"
	k.frontBundle("behind", fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    host: app-%s.test
  - type: reverse-proxy
    reversing-host: %s
    reversed-host: 127.0.0.1
    reversed-port: %d
    requires-secure: true
  - type: reverse-proxy
    reversing-host: %s
    reversed-host: 127.0.0.1
    reversed-port: %d
`, tok, secure, be.port(), open, be.port()), nil)
	tlsPort, plainPort := frontProxy(t, k.Port)
	viaTLS := fmt.Sprintf("https://127.0.0.1:%d/echo", tlsPort)
	viaPlain := fmt.Sprintf("http://127.0.0.1:%d/echo", plainPort)
	for _, c := range []struct {
		what, url, host string
		headers         []string
		code            int
		want            string
	}{
		{"https at the proxy", viaTLS, secure, nil, 200, "xff=127.0.0.1, 127.0.0.2|xfp=https|xrip=127.0.0.1"},
		{"plain at the proxy", viaPlain, secure, nil, 301, "https://" + secure + "/echo"},
		{"a forged address through the proxy", viaTLS, open, []string{"X-Forwarded-For", "6.6.6.6"}, 200, "xff=6.6.6.6, 127.0.0.1, 127.0.0.2|xfp=https|xrip=127.0.0.1"},
		{"forged headers from elsewhere, requires-secure", k.url("/echo"), secure, []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https"}, 301, "https://" + secure + "/echo"},
		{"forged headers from elsewhere", k.url("/echo"), open, []string{"X-Forwarded-For", "6.6.6.6", "X-Forwarded-Proto", "https"}, 200, "xff=127.0.0.1|xfp=http|xrip=127.0.0.1"},
	} {
		resp, body, err := send("GET", c.url, c.host, nil, c.headers...)
		if err != nil {
			t.Errorf("%s: %v", c.what, err)
			continue
		}
		got := string(body)
		if c.code == 301 {
			got = resp.Header.Get("Location")
		}
		if resp.StatusCode != c.code || got != c.want {
			t.Errorf("%s: %d %q, want %d %q", c.what, resp.StatusCode, got, c.code, c.want)
		}
	}
}

// frontProxy runs a TLS-terminating nginx on loopback in front of keter's
// listener, as a load balancer does: it connects from 127.0.0.2 and sends
// X-Forwarded-For and X-Forwarded-Proto. It returns its TLS and plain ports.
func frontProxy(t *testing.T, keterPort int) (int, int) {
	t.Helper()
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	dir := filepath.Join(testkit.Root(t), "front")
	testkit.SelfSigned(t, dir, "front", "localhost")
	tlsPort, plainPort := testkit.FreePort(t), testkit.FreePort(t)
	var temps strings.Builder
	for _, tp := range []string{"client_body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		fmt.Fprintf(&temps, "    %s_temp_path %s/%s_temp;\n", tp, dir, tp)
	}
	conf := fmt.Sprintf(`daemon off;
pid %[1]s/front.pid;
error_log %[1]s/error.log warn;
events { worker_connections 64; }
http {
    access_log off;
%[2]s    server {
        listen 127.0.0.1:%[3]d ssl;
        listen 127.0.0.1:%[4]d;
        ssl_certificate %[1]s/front.pem;
        ssl_certificate_key %[1]s/front.key;
        location / {
            proxy_pass http://127.0.0.1:%[5]d;
            proxy_bind 127.0.0.2;
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }
    }
}
`, dir, temps.String(), tlsPort, plainPort, keterPort)
	if err := os.WriteFile(filepath.Join(dir, "front.conf"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", filepath.Join(dir, "front.conf"))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // SIGINT: nginx's fast shutdown, workers too
		cmd.Wait()
	})
	eventually(t, 10*time.Second, func() error {
		c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(plainPort))
		if err != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			return fmt.Errorf("the front nginx does not listen: %v\n%s%s", err, out.String(), log)
		}
		c.Close()
		return nil
	})
	return tlsPort, plainPort
}
