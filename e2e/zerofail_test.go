package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/loadgen"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/nginx"
)

// Zero failed requests for every kind of app. A strict client (keep-alive,
// no retries, every answer checked to its last byte) drives each of
// behaveapp's behaviours, GET and POST, through keter's nginx while keter
// switches versions every way it can: redeploys, drops a newer bundle
// supersedes mid-deploy, a rollback, instances up and down, a keter
// restart and a keter SIGKILL while an old version drains, maintenance on
// and off (a webapp and a static site). Answers that began at an old
// version (a 3 s stream, a 20 MiB download, a long poll, a WebSocket) run
// to their end, and nginx is never reloaded.

// zeroApp deploys behaveapp versions of one app and follows what serves.
type zeroApp struct {
	t    *testing.T
	k    *keter
	name string
	host string
	n    int
}

// bundle writes version v of the app (with extra keter.yaml lines) and
// returns its path, named as the app's bundle.
func (z *zeroApp) bundle(v, extra string) string {
	z.t.Helper()
	dir := filepath.Join(z.k.Root, "src", v)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		z.t.Fatal(err)
	}
	path := filepath.Join(dir, z.name+".keter")
	// Streams last 3 s: an old version may drain for 8.
	testkit.BehaveBundle(z.t, path, z.host, "drain: 8s\n"+extra, "--version", v)
	return path
}

func (z *zeroApp) next() string {
	z.n++
	return "v" + strconv.Itoa(z.n)
}

// deploy makes a new version live through `keter deploy`, which returns
// once keter called it live.
func (z *zeroApp) deploy(extra string) string {
	z.t.Helper()
	v := z.next()
	mustCLI(z.t, 0, "deploy", "-c", z.k.config(), z.bundle(v, extra))
	z.serving(v)
	return v
}

// serving waits until a fresh request gets version v.
func (z *zeroApp) serving(v string) {
	z.t.Helper()
	eventually(z.t, 60*time.Second, func() error {
		code, body, err := z.k.Get(z.host, "/")
		if err != nil {
			return err
		}
		if code != 200 || !strings.HasPrefix(body, "behaveapp "+v+" ") {
			return fmt.Errorf("got %d %.40q, want version %s", code, body, v)
		}
		return nil
	})
}

// reloads reads keter_nginx_reloads_total from the status page on port.
func reloads(t *testing.T, port int) string {
	t.Helper()
	n := metric(t, fmt.Sprintf("http://127.0.0.1:%d", port), "keter_nginx_reloads_total")
	if n == "" {
		t.Fatal("no keter_nginx_reloads_total in /metrics")
	}
	return n
}

// startZeroKeter starts keter with its status page on a port of its own.
func startZeroKeter(t *testing.T) (*keter, int) {
	t.Helper()
	port := testkit.FreePort(t)
	return startKeter(t, fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\n", port)), port
}

// reloadsOver waits until keter's nginx reload count holds still for
// longer than keter's least gap between two reloads.
func reloadsOver(t *testing.T, port int) {
	t.Helper()
	last, since := reloads(t, port), time.Now()
	for time.Since(since) < 2*nginx.MinReloadGap {
		time.Sleep(200 * time.Millisecond)
		if n := reloads(t, port); n != last {
			last, since = n, time.Now()
		}
	}
}

// drive starts the strict client at every behaviour.
func drive(t *testing.T, k *keter, host string, maintenance bool) *loadgen.Run {
	t.Helper()
	run, err := loadgen.Start(context.Background(), loadgen.Options{
		Addr: fmt.Sprintf("127.0.0.1:%d", k.Port), Host: host, WorkersPer: 1,
		// Two cores run nginx, keter, the apps and the client: downloads
		// and one-write answers in a tight loop would starve the rest.
		Pause: 30 * time.Millisecond, Maintenance: maintenance,
	})
	if err != nil {
		t.Fatal(err)
	}
	return run
}

// settle waits until the loops of r have been under way for a while, so
// that every behaviour has answers in flight at the next switch.
func settle() { time.Sleep(1500 * time.Millisecond) }

// checkZero fails t unless every behaviour sent and got answers and none
// failed; it logs the counts per behaviour (the closing note's table).
func checkZero(t *testing.T, what string, res loadgen.Result, minVersions int) {
	t.Helper()
	t.Logf("%s:\n%s", what, res)
	for _, b := range loadgen.All() {
		c := res.PerBehaviour[b]
		if c == nil || c.Sent == 0 || c.OK == 0 {
			t.Errorf("%s: %s: nothing answered: %+v", what, b, c)
			continue
		}
		want := minVersions
		switch b {
		case loadgen.Stream, loadgen.SSE, loadgen.Poll:
			want = (minVersions + 1) / 2 // 3 s each: fewer answers
		case loadgen.WS:
			want = min(minVersions, 3) // open until the old version's drain ends
		}
		if len(c.Versions) < want {
			t.Errorf("%s: %s: answers from %d versions %v, want at least %d (switches under load)", what, b, len(c.Versions), c.Versions, want)
		}
	}
	if n := res.Failed(); n != 0 {
		for _, b := range loadgen.All() {
			if c := res.PerBehaviour[b]; c != nil && c.Failed > 0 {
				t.Errorf("%s: %s: %d failed: %s", what, b, c.Failed, strings.Join(c.Failures, "\n  "))
			}
		}
	}
}

func TestZeroFailedAcrossSwitches(t *testing.T) {
	k, sp := startZeroKeter(t)
	z := &zeroApp{t: t, k: k, name: "zero", host: "zero.test"}
	z.deploy("")
	before := reloads(t, sp)
	run := drive(t, k, z.host, false)
	settle()

	// Twenty redeploys, one after another.
	for range 20 {
		z.deploy("")
		time.Sleep(300 * time.Millisecond)
	}
	// Three drops in quick succession: each supersedes the one before
	// mid-deploy; the last goes live.
	var last string
	for range 3 {
		last = z.next()
		k.Drop(z.bundle(last, ""), z.name+".keter")
		time.Sleep(80 * time.Millisecond)
	}
	z.serving(last)
	settle()
	// Rollback: the bundle before goes live again (a redeploy of it).
	mustCLI(t, 0, "rollback", "-c", k.config(), z.name)
	settle()
	// Instances up and down: 3, 1, 2.
	for _, n := range []int{3, 1, 2} {
		z.deploy("instances: " + strconv.Itoa(n) + "\n")
		settle()
	}
	if got := reloads(t, sp); got != before {
		t.Errorf("switches reloaded nginx: keter_nginx_reloads_total %s → %s", before, got)
	}

	// keter restarted, then SIGKILLed, each right after a switch: the old
	// version's answers in flight finish, and it is stopped afterwards.
	z.deploy("")
	k.restart()
	settle()
	z.deploy("")
	if out, err := exec.Command("systemctl", "kill", "-s", "KILL", k.Unit).CombinedOutput(); err != nil {
		t.Fatalf("SIGKILL to keter: %v %s", err, out)
	}
	eventually(t, 30*time.Second, func() error {
		out, _ := exec.Command("systemctl", "is-active", k.Unit).Output()
		if strings.TrimSpace(string(out)) != "active" {
			return fmt.Errorf("keter is %s", out)
		}
		return nil
	})
	settle()
	settle()
	res := run.Stop()
	checkZero(t, "switches", res, 20)
	if !strings.Contains(k.Log(), "old version stopped") {
		t.Errorf("no old version was stopped")
	}
	// Every old version drains and is stopped: one unit and one folder left.
	k.waitSettled(1, 60*time.Second)
}

// TestZeroFailedMaintenance: maintenance on and off under the strict
// client: answers are the app's or the maintenance page, none fails; a
// static site of another app goes into maintenance and out without a
// reload as well.
func TestZeroFailedMaintenance(t *testing.T) {
	k, sp := startZeroKeter(t)
	z := &zeroApp{t: t, k: k, name: "zerom", host: "zerom.test"}
	z.deploy("")
	docs := filepath.Join(k.Root, "src", "docs.keter")
	testkit.Bundle(t, docs, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte("stanzas:\n  - type: static-files\n    root: ../public\n    host: docs.test\n")},
		"public/index.html": {Body: []byte("docs index\n")},
	})
	mustCLI(t, 0, "deploy", "-c", k.config(), docs)
	before := reloads(t, sp)
	run := drive(t, k, z.host, true)
	settle()
	for range 3 {
		mustCLI(t, 0, "maintenance", "on", z.name, "-c", k.config())
		mustCLI(t, 0, "maintenance", "on", "docs", "-c", k.config())
		if code, _, err := k.Get("docs.test", "/"); err != nil || code != 503 {
			t.Fatalf("static site in maintenance: %d %v, want 503", code, err)
		}
		settle()
		mustCLI(t, 0, "maintenance", "off", z.name, "-c", k.config())
		mustCLI(t, 0, "maintenance", "off", "docs", "-c", k.config())
		if code, body, err := k.Get("docs.test", "/"); err != nil || code != 200 || body != "docs index" {
			t.Fatalf("static site out of maintenance: %d %q %v", code, body, err)
		}
		settle()
	}
	res := run.Stop()
	checkZero(t, "maintenance", res, 1)
	for _, b := range loadgen.All() {
		// A WebSocket opened before runs on at the app, as it should.
		if b != loadgen.WS && res.PerBehaviour[b].Paged == 0 {
			t.Errorf("%s: no maintenance page while the app was in maintenance", b)
		}
	}
	if got := reloads(t, sp); got != before {
		t.Errorf("maintenance reloaded nginx: keter_nginx_reloads_total %s → %s", before, got)
	}
}

// twoWriteApp is the issue's own reproduction: Python's http.server
// writing the headers, then (20 ms later) the body, keep-alive on.
const twoWriteApp = `import os, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

VERSION = sys.argv[1]

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = ("hello from python " + VERSION + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.flush()
        time.sleep(0.02)
        self.wfile.write(body)
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(os.environ["PORT"])), H).serve_forever()
`

// TestTwoWriteAppUnderWrk: wrk -t2 -c16 (keep-alive, no retries) at a
// Python app that answers in two writes, across five redeploys one a
// second, then 30 drops in quick succession (each superseding the one
// before mid-deploy), as the report did.
func TestTwoWriteAppUnderWrk(t *testing.T) {
	// Debian's, not a developer's pyenv shim under /root, which the
	// app's sandbox hides.
	python := testkit.NeedBinary(t, "/usr/bin/python3", "apt-get install python3")
	wrk := testkit.NeedBinary(t, "wrk", "apt-get install wrk")
	k := startKeter(t, "")
	bundle := func(v string) string {
		t.Helper()
		dir := filepath.Join(k.Root, "src", v)
		os.MkdirAll(dir, 0o755)
		path := filepath.Join(dir, "py.keter")
		testkit.Bundle(t, path, map[string]testkit.File{
			"config/keter.yaml": {Body: []byte(fmt.Sprintf("exec: %s\nhost: py.test\nargs: [app.py, %s]\n", python, v))},
			"app.py":            {Body: []byte(twoWriteApp)},
		})
		return path
	}
	deploy := func(v string) {
		t.Helper()
		mustCLI(t, 0, "deploy", "-c", k.config(), bundle(v))
		k.WaitBody("py.test", "hello from python "+v, 30*time.Second)
	}
	deploy("v0")
	w := &wrkLoad{cmd: exec.Command(wrk, "-t2", "-c16", "-d3600s", "-H", "Host: py.test", fmt.Sprintf("http://127.0.0.1:%d/", k.Port))}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.cmd.Process.Kill(); w.cmd.Wait() })
	time.Sleep(time.Second)
	for i := 1; i <= 5; i++ {
		deploy("v" + strconv.Itoa(i))
		time.Sleep(time.Second)
	}
	for i := 6; i <= 35; i++ {
		k.Drop(bundle("v"+strconv.Itoa(i)), "py.keter")
		time.Sleep(100 * time.Millisecond)
	}
	k.WaitBody("py.test", "hello from python v35", 60*time.Second)
	time.Sleep(2 * time.Second)
	if failed := w.stop(t); failed != 0 {
		t.Fatalf("wrk saw %d failed requests across 5 redeploys and 30 quick drops", failed)
	}
	if !strings.Contains(w.out.String(), "requests in") {
		t.Fatalf("wrk printed no summary:\n%s", w.out.String())
	}
}
