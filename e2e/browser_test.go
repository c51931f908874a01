package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write docs/status-page.png from the browser test")

// chromium runs Debian's chromium headless as root with a fresh profile.
func chromium(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := testkit.NeedBinary(t, "chromium", "apt-get install chromium (scripts/deps.sh)")
	profile, err := os.MkdirTemp("", "keter-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(profile)
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
		"--disable-component-update", "--disable-sync", "--no-first-run", "--user-data-dir=" + profile}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s\n%s", url, resp.Status, b)
	}
	return string(b)
}

// TestStatusPageInChromium deploys an app and loads the status page in a
// real browser: the rendered DOM names the app, its host and version. The
// JSON API and /metrics behind it agree.
func TestStatusPageInChromium(t *testing.T) {
	port := testkit.FreePort(t)
	k := startKeter(t, fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\n", port))
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	name := "web" + testkit.Token()
	host := name + ".example.test"
	src := filepath.Join(k.Root, name+".keter")
	testkit.DemoBundle(t, src, host, "--message", "browser")
	mustCLI(t, 0, "deploy", "-c", k.config(), src)

	var apps []appJSON
	if err := json.Unmarshal([]byte(httpGet(t, base+"/api/apps")), &apps); err != nil {
		t.Fatal(err)
	}
	if len(apps) != 1 || apps[0].Name != name || apps[0].Live == nil {
		t.Fatalf("/api/apps: %+v", apps)
	}
	version := apps[0].Live.Version

	metrics := httpGet(t, base+"/metrics")
	for _, want := range []string{
		`keter_deploys_total{result="live"} 1`,
		`keter_deploys_total{result="failed"} 0`,
		`keter_deploy_duration_seconds_count 1`,
		`keter_deploy_duration_seconds_bucket{le="+Inf"} 1`,
		`keter_apps{state="live"} 1`,
		`keter_apps{state="failed"} 0`,
		`# TYPE keter_deploy_duration_seconds histogram`,
		`keter_ready 1`,
	} {
		if !strings.Contains(metrics, want+"\n") {
			t.Errorf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	m := regexp.MustCompile(`(?m)^keter_nginx_reloads_total (\d+)$`).FindStringSubmatch(metrics)
	if m == nil {
		t.Errorf("/metrics lacks keter_nginx_reloads_total:\n%s", metrics)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("keter_nginx_reloads_total missing or zero after a deploy:\n%s", metrics)
	}

	dom := string(chromium(t, "--dump-dom", base+"/"))
	for _, want := range []string{`class="app-name">` + name + "<", `class="host">` + host + "<", `class="version">` + version + "<", "demoapp listening on port"} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered status page lacks %q:\n%s", want, dom)
		}
	}

	shot := filepath.Join(k.Root, "status-page.png")
	chromium(t, "--screenshot="+shot, "--window-size=1200,800", "--hide-scrollbars", base+"/")
	png, err := os.ReadFile(shot)
	if err != nil || !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 5000 {
		t.Fatalf("screenshot: %v, %d bytes", err, len(png))
	}
	if *updateScreenshot {
		os.MkdirAll(filepath.Join("..", "docs"), 0o755)
		if err := os.WriteFile(filepath.Join("..", "docs", "status-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
