package nginx

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
)

// TestRenderHTTP2: every TLS listen carries HTTP/2 in the spelling the
// nginx version wants, and plain listens never do.
func TestRenderHTTP2(t *testing.T) {
	g := globalConfig(t, "listeners:\n  - port: 80\n  - port: 443\n    certificate: /etc/keter/tls/cert.pem\n    key: /etc/keter/tls/key.pem\n")
	apps := []App{app("web", one(map[int]int{0: 43300}), webapp("web.example.com"))}
	for _, on := range []bool{false, true} {
		p := goldenPaths()
		p.HTTP2On = on
		out, err := Render(g, apps, p)
		if err != nil {
			t.Fatal(err)
		}
		var tlsListens, h2Listens, h2On int
		for _, l := range strings.Split(string(out.Main), "\n") {
			l = strings.TrimSpace(l)
			switch {
			case strings.HasPrefix(l, "listen ") && strings.Contains(l, " ssl"):
				tlsListens++
				if strings.Contains(l, " http2") {
					h2Listens++
				}
			case strings.HasPrefix(l, "listen ") && strings.Contains(l, "http2"):
				t.Errorf("plain listener with HTTP/2: %q", l)
			case l == "http2 on;":
				h2On++
			}
		}
		if tlsListens == 0 {
			t.Fatal("no TLS listen rendered")
		}
		if on && (h2Listens != 0 || h2On == 0) || !on && (h2Listens != tlsListens || h2On != 0) {
			t.Errorf("HTTP2On=%v: %d of %d TLS listens say http2, %d `http2 on`", on, h2Listens, tlsListens, h2On)
		}
	}
}

// TestManagedHTTP2: a TLS listener negotiates h2 by ALPN, while the plain
// listener keeps answering HTTP/1.1.
func TestManagedHTTP2(t *testing.T) {
	f := startFront(t, "")
	web := backend(t, "h2")
	apps := []App{{Name: "h2", Dir: f.root, Ports: one(map[int]int{0: portOf(t, web)}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{webapp("h2.test")}}}}
	if err := f.m.Apply(t.Context(), apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	dialer := func(port int) func(ctx context.Context, network, addr string) (net.Conn, error) {
		return func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", port))
		}
	}
	h2 := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:       dialer(f.tlsPort),
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, ServerName: "h2.test"},
		ForceAttemptHTTP2: true,
	}}
	plain := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: dialer(f.port)}}
	for _, c := range []struct {
		name   string
		client *http.Client
		url    string
		major  int
	}{
		{"TLS", h2, "https://h2.test/", 2},
		{"plain", plain, "http://h2.test/", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			eventually(t, c.name+" answers over HTTP/"+fmt.Sprint(c.major), func() error {
				resp, err := c.client.Get(c.url)
				if err != nil {
					return err
				}
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.ProtoMajor != c.major {
					return fmt.Errorf("got %d over %s", resp.StatusCode, resp.Proto)
				}
				if c.major == 2 && (resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2") {
					return fmt.Errorf("ALPN did not pick h2: %+v", resp.TLS)
				}
				return nil
			})
		})
	}
}
