package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/portmap"
)

var (
	buildOnce sync.Once
	keterBin  string
	buildErr  error
)

// keterBinary builds cmd/keter once per test binary.
func keterBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "keter-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		keterBin = filepath.Join(dir, "keter")
		_, self, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", keterBin, "./cmd/keter")
		cmd.Dir = filepath.Join(filepath.Dir(self), "..")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("%v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatalf("building keter: %v", buildErr)
	}
	return keterBin
}

// keter is one keter daemon running as a unit of the sandbox systemd.
type keter struct {
	t     *testing.T
	Root  string
	Port  int
	Unit  string
	Nginx string
	Table string // the port map's nftables table
	// Config is the config file's path when not ROOT/keter-config.yaml.
	Config string
	// client sends Get's requests; nil means the shared client.
	client *http.Client
}

// startKeter writes a config with extra YAML appended and starts keter as
// a Type=notify unit, so it returns once keter said READY.
func startKeter(t *testing.T, extra string) *keter {
	t.Helper()
	return startKeterNginx(t, "", extra)
}

// startKeterNginx is startKeter with more keys for the nginx block.
func startKeterNginx(t *testing.T, nginxYAML, extra string) *keter {
	t.Helper()
	testkit.NeedSystemd(t)
	nginxBin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	tok := testkit.Token()
	k := &keter{t: t, Root: testkit.Root(t), Port: testkit.FreePort(t), Unit: "keter-e2e-" + tok + ".service", Nginx: "keter-nginx-" + tok + ".service", Table: "kt_" + tok}
	cfg := fmt.Sprintf("root: %s\nlisteners:\n  - host: 127.0.0.1\n    port: %d\ngraceful-drain-micros: 1000000\nnginx:\n  mode: managed\n  binary: %s\n  service: %s\n  nft-table: %s\n%s%s",
		k.Root, k.Port, nginxBin, k.Nginx, k.Table, nginxYAML, extra)
	if !strings.Contains(extra, "port-manager:") {
		// Ports of their own: each keter hands its ports out in the same
		// order, and a port a test before this one used may still be held
		// (a draining app, another sandbox's keter on this host).
		// Below the kernel's ephemeral ports, so nothing needs reserving.
		// 300: a hundred apps take two each, the maintenance responder
		// one, and the first few apps spare fronts (see app/fronts.go).
		from := 20000 + rand.IntN(40)*300
		cfg += fmt.Sprintf("port-manager:\n  reserve: false\n  ranges: [{from: %d, to: %d}]\n", from, from+299)
	}
	keterBinary(t)
	if err := os.WriteFile(filepath.Join(k.Root, "keter-config.yaml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.cleanup)
	k.start()
	return k
}

// start runs keter as a transient Type=notify unit, with extra
// environment assignments (KEY=VALUE).
func (k *keter) start(env ...string) {
	k.t.Helper()
	args := []string{"--unit", k.Unit, "-p", "Type=notify", "-p", "Restart=always", "-p", "RestartSec=100ms",
		"-p", "KillMode=process", "-p", "TimeoutStartSec=120"}
	for _, e := range env {
		args = append(args, "--setenv="+e)
	}
	args = append(args, keterBinary(k.t), "run", k.config())
	run(k.t, "systemd-run", args...)
}

// restart stops keter (apps keep running) and starts it again with env.
func (k *keter) restart(env ...string) {
	k.t.Helper()
	run(k.t, "systemctl", "stop", k.Unit)
	k.start(env...)
}

func (k *keter) cleanup() {
	exec.Command("systemctl", "stop", k.Unit).Run()
	if k.t.Failed() {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", k.Unit).CombinedOutput()
		k.t.Logf("keter log:\n%s", out)
		// nginx's errors name the upstream a failed request went to.
		out, _ = exec.Command("journalctl", "--no-pager", "-o", "short-precise", "-n", "200", "-u", k.Nginx).CombinedOutput()
		k.t.Logf("keter-nginx:\n%s", out)
	}
	// App units outlive keter by design; the test owns them.
	out, _ := exec.Command("systemctl", "list-units", "--all", "--plain", "--no-legend", "keter-app-*", "keter-nginx*").Output()
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			exec.Command("systemctl", "stop", f[0]).Run()
		}
	}
	removeTable(k.Table)
}

// removeTable deletes a keter's port map table, which outlives keter.
func removeTable(name string) {
	if name != "" {
		portmap.New(name).Remove(context.Background())
	}
}

// Drop copies a bundle into incoming atomically (write then rename).
func (k *keter) Drop(src, name string) {
	k.t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		k.t.Fatal(err)
	}
	tmp := filepath.Join(k.Root, "incoming", "."+name+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		k.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(k.Root, "incoming", name)); err != nil {
		k.t.Fatal(err)
	}
}

// deployDemo drops a demo-app bundle for host, answering msg, as file
// into incoming, and waits until nginx serves it and keter has called it
// live (nginx serves a new version a little before keter's deploy ends).
func (k *keter) deployDemo(file, host, msg string) {
	k.t.Helper()
	live := `msg="version live" app=` + strings.TrimSuffix(file, ".keter") + " "
	before := strings.Count(k.Log(), live)
	src := filepath.Join(k.Root, "."+file+".src")
	testkit.DemoBundle(k.t, src, host, "--message", msg)
	k.Drop(src, file)
	k.WaitBody(host, msg, 60*time.Second)
	eventually(k.t, 30*time.Second, func() error {
		if strings.Count(k.Log(), live) == before {
			return fmt.Errorf("keter has not logged %s%s yet", live, msg)
		}
		return nil
	})
}

// Get fetches path through keter's nginx with the given Host.
func (k *keter) Get(host, path string) (int, string, error) {
	req, err := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", k.Port, path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	c := k.client
	if c == nil {
		c = client
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(body)), err
}

var client = &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// WaitBody polls until host answers 200 with body.
func (k *keter) WaitBody(host, body string, within time.Duration) {
	k.t.Helper()
	eventually(k.t, within, func() error {
		code, got, err := k.Get(host, "/")
		if err != nil {
			return err
		}
		if code != 200 || got != body {
			return fmt.Errorf("got %d %q, want 200 %q", code, got, body)
		}
		return nil
	})
}

// WaitCode polls until host answers with code.
func (k *keter) WaitCode(host string, code int, within time.Duration) {
	k.t.Helper()
	eventually(k.t, within, func() error {
		got, _, err := k.Get(host, "/")
		if err != nil {
			return err
		}
		if got != code {
			return fmt.Errorf("got %d, want %d", got, code)
		}
		return nil
	})
}

// Log returns keter's own journal.
func (k *keter) Log() string {
	out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", k.Unit).CombinedOutput()
	return string(out)
}

// waitSettled waits until exactly n app units are active and n unpacked
// versions remain: what keter leaves once deploys, drains and removals end.
func (k *keter) waitSettled(n int, within time.Duration) {
	k.t.Helper()
	eventually(k.t, within, func() error {
		if u := activeAppUnits(k.t); len(u) != n {
			return fmt.Errorf("active app units %v, want %d", u, n)
		}
		if left, _ := os.ReadDir(filepath.Join(k.Root, "temp")); len(left) != n {
			return fmt.Errorf("temp holds %v, want %d folders", names(left), n)
		}
		return nil
	})
}

// activeAppUnits lists keter-app-* units that are not inactive.
func activeAppUnits(t *testing.T) []string {
	t.Helper()
	out := run(t, "systemctl", "list-units", "--plain", "--no-legend", "--state=active,activating,reloading,deactivating", "keter-app-*")
	var units []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 {
			units = append(units, f[0])
		}
	}
	return units
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func eventually(t *testing.T, within time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after %s: %v", within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load sends requests to host continuously and counts failures, i.e.
// anything but a 200 with one of the accepted bodies.
type load struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	firstErrs  []string
	cancel     context.CancelFunc
	wg         sync.WaitGroup
}

func startLoad(k *keter, host string, workers int, accept func(string) bool) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{cancel: cancel}
	for range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for ctx.Err() == nil {
				code, body, err := k.Get(host, "/")
				if err == nil && code == 200 && accept(body) {
					l.ok.Add(1)
					continue
				}
				l.failed.Add(1)
				l.mu.Lock()
				if len(l.firstErrs) < 5 {
					l.firstErrs = append(l.firstErrs, fmt.Sprintf("code=%d body=%q err=%v", code, body, err))
				}
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// mustAllSucceed stops the load and fails the test if any request
// failed, or none was made, during what the caller describes.
func (l *load) mustAllSucceed(t *testing.T, during string) {
	t.Helper()
	l.cancel()
	l.wg.Wait()
	ok, failed := l.ok.Load(), l.failed.Load()
	t.Logf("requests: %d ok, %d failed", ok, failed)
	if failed > 0 {
		t.Logf("first failures: %v", l.firstErrs)
	}
	if failed != 0 || ok == 0 {
		t.Fatalf("%d requests failed (%d ok) %s", failed, ok, during)
	}
}
