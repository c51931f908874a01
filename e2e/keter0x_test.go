package e2e

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

// TestKeter0xSeedConfig runs keter on the original Keter README's
// keter-config.yaml (ROOT/etc/keter-config.yaml, root: ..) with its
// commented options filled in, host, port and ssl, and deploys that
// README's sample bundle with a real GHC-built Warp binary as
// dist/build/yesodweb/yesodweb: it must serve on the port the config
// names over HTTP and on the ssl port over HTTPS with the given
// certificate.
func TestKeter0xSeedConfig(t *testing.T) {
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	warp := mustRead(t, testkit.WarpApp(t))
	const host = "www.yesodweb.com"

	root := testkit.Root(t)
	etc := filepath.Join(root, "etc")
	pool := testkit.SelfSigned(t, filepath.Join(etc, "ssl"), "yesodweb", host)
	tok := testkit.Token()
	k := &keter{t: t, Root: root, Port: testkit.FreePort(t), Unit: "keter-e2e-" + tok + ".service",
		Nginx: "keter-nginx-" + tok + ".service", Table: "kt_" + tok, Config: filepath.Join(etc, "keter-config.yaml")}
	sslPort := testkit.FreePort(t)
	cfg := fmt.Sprintf(`# /opt/keter/etc/keter-config.yaml
root: ..
# host: host to bind to
host: 127.0.0.1
# port: port to listen on
port: %d
ssl:
  host: 127.0.0.1
  port: %d
  key: ssl/yesodweb.key
  certificate: ssl/yesodweb.pem

# Not the seed's: this keter's own nginx unit, nftables table and app
# ports, so it runs beside others on the host.
graceful-drain-micros: 1000000
nginx:
  mode: managed
  binary: %s
  service: %s
  nft-table: %s
status:
  listen: "off"
%s`, k.Port, sslPort, nginxBin, k.Nginx, k.Table, ownPorts())
	if err := os.WriteFile(k.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	keterBinary(t)
	t.Cleanup(k.cleanup)
	k.start()

	// The seed README's sample bundle, as its bash script packs it.
	src := filepath.Join(root, "yesodweb.src")
	testkit.Bundle(t, src, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(`exec: ../dist/build/yesodweb/yesodweb
args:
  - production
host: www.yesodweb.com
ssl: false # true would use https scheme for approot
`)},
		"dist/build/yesodweb/yesodweb": {Body: warp, Mode: 0o755},
		"static/css/site.css":          {Body: []byte("body { margin: 0 }\n")},
	})
	k.Drop(src, "yesodweb.keter")
	const want = "hello from warp production"
	k.waitServes(t, "yesodweb", host, want, 2*time.Minute)

	https := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: host},
	}}
	req, err := http.NewRequest("GET", fmt.Sprintf("https://127.0.0.1:%d/", sslPort), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Host = host
	resp, err := https.Do(req)
	if err != nil {
		t.Fatalf("HTTPS on the ssl port %d: %v", sslPort, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || strings.TrimSpace(string(body)) != want {
		t.Fatalf("HTTPS on the ssl port: %s %q, want 200 %q", resp.Status, body, want)
	}
	if log := k.Log(); strings.Contains(log, "unknown key") {
		t.Errorf("keter warned about the seed's keys:\n%s", log)
	}
}
