package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/nginx"
)

// cli runs the keter binary and returns its stdout, stderr and exit code.
func cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(keterBinary(t), args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running keter %v: %v", args, err)
	}
	return stdout.String(), stderr.String(), code
}

// mustCLI runs keter and fails the test unless it exits with want.
func mustCLI(t *testing.T, want int, args ...string) (string, string) {
	t.Helper()
	out, errOut, code := cli(t, args...)
	if code != want {
		t.Fatalf("keter %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, want, out, errOut)
	}
	return out, errOut
}

func (k *keter) config() string {
	if k.Config != "" {
		return k.Config
	}
	return filepath.Join(k.Root, "keter-config.yaml")
}

// statusJSON is the part of `keter status --json` the tests read.
type statusJSON struct {
	Keter struct {
		State   string `json:"state"`
		Version string `json:"version"`
	} `json:"keter"`
	Apps []appJSON `json:"apps"`
}

type appJSON struct {
	Name       string `json:"name"`
	State      string `json:"state"`
	LastResult string `json:"last_result"`
	LastHint   string `json:"last_hint"`
	LastError  string `json:"last_error"`
	Live       *struct {
		Version string   `json:"version"`
		Digest  string   `json:"digest"`
		Hosts   []string `json:"hosts"`
	} `json:"live"`
	Units []struct {
		Name   string `json:"name"`
		Active string `json:"active_state"`
		Live   bool   `json:"live"`
	} `json:"units"`
	Log []string `json:"log"`
}

func statusOf(t *testing.T, k *keter) statusJSON {
	t.Helper()
	out, _ := mustCLI(t, 0, "status", "-c", k.config(), "--json")
	var s statusJSON
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("keter status --json: %v\n%s", err, out)
	}
	return s
}

func (s statusJSON) app(name string) *appJSON {
	for i := range s.Apps {
		if s.Apps[i].Name == name {
			return &s.Apps[i]
		}
	}
	return nil
}

func digestOf(t *testing.T, path string) string {
	t.Helper()
	d, err := bundle.Digest(path)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestCLIOperations drives one app through the CLI against a running
// keter: deploy (exit 0 means live at once), status in text and JSON, a
// refused deploy (exit 1 with the error and the app's own lines), logs
// across versions, and rollback to the previous bundle.
func TestCLIOperations(t *testing.T) {
	k := startKeter(t, fmt.Sprintf("status:\n  listen: 127.0.0.1:%d\nkeep-bundles: 2\n", testkit.FreePort(t)))
	host := "cli-" + testkit.Token() + ".test"
	const name = "cliapp"
	build := func(version string, args ...string) string {
		dir := filepath.Join(k.Root, "build", version)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".keter")
		stanzaBundle(t, path, host, "    ensure-alive-time-bound: 5000000\n", args...)
		return path
	}
	v1, v2 := build("v1", "--message", "v1"), build("v2", "--message", "v2")
	bad := build("bad", "--message", "bad", "--exit", "3")

	out, _ := mustCLI(t, 0, "deploy", "-c", k.config(), v1)
	if !strings.Contains(out, name+": version") || !strings.Contains(out, host) {
		t.Errorf("deploy output does not name the live version and host:\n%s", out)
	}
	// Exit 0 promises the version is live: its status says so, and nginx
	// already serves it (keter waits for nginx to load the new config).
	s := statusOf(t, k)
	if a := s.app(name); a == nil || a.Live == nil || a.Live.Digest != digestOf(t, v1) {
		t.Fatalf("right after deploy exited 0 the status is %+v, want v1 live", a)
	}
	mustServe(t, k, host, "v1")

	a := s.app(name)
	if s.Keter.State != "ready" || a == nil || a.Live == nil {
		t.Fatalf("status --json: keter %q, app %+v", s.Keter.State, a)
	}
	if a.State != "live" || a.Live.Digest != digestOf(t, v1) || len(a.Live.Hosts) != 1 || a.Live.Hosts[0] != host {
		t.Fatalf("status --json app: state %q digest %s hosts %v, want live %s [%s]", a.State, a.Live.Digest, a.Live.Hosts, digestOf(t, v1), host)
	}
	if len(a.Units) != 1 || a.Units[0].Active != "active" || !a.Units[0].Live {
		t.Fatalf("status --json units: %+v, want one active live unit", a.Units)
	}
	text, _ := mustCLI(t, 0, "status", "-c", k.config())
	for _, want := range []string{name, "live", host, a.Live.Version, "ready"} {
		if !strings.Contains(text, want) {
			t.Errorf("status text lacks %q:\n%s", want, text)
		}
	}
	one, _ := mustCLI(t, 0, "status", name, "-c", k.config())
	for _, want := range []string{"version:      " + a.Live.Version, a.Units[0].Name, "demoapp listening on port", "ports:        web0 "} {
		if !strings.Contains(one, want) {
			t.Errorf("status %s lacks %q:\n%s", name, want, one)
		}
	}
	mustCLI(t, 1, "status", "-c", k.config(), "nosuchapp")

	mustCLI(t, 0, "deploy", "-c", k.config(), v2)
	if a := statusOf(t, k).app(name); a == nil || a.Live == nil || a.Live.Digest != digestOf(t, v2) {
		t.Fatalf("right after deploying v2 the status is %+v", a)
	}
	mustServe(t, k, host, "v2")

	_, errOut := mustCLI(t, 1, "deploy", "-c", k.config(), bad)
	// An app that exits at once fails its readiness check, or, when it is
	// gone before systemd has finished starting it, its start job.
	if !strings.Contains(errOut, "did not become ready") && !strings.Contains(errOut, `job result "failed"`) {
		t.Errorf("failed deploy's stderr says neither that the app did not become ready nor that its start failed:\n%s", errOut)
	}
	for _, want := range []string{"demoapp exiting with 3 as asked", "keeps serving"} {
		if !strings.Contains(errOut, want) {
			t.Errorf("failed deploy's stderr lacks %q:\n%s", want, errOut)
		}
	}
	if _, body, _ := k.Get(host, "/"); body != "v2" {
		t.Fatalf("after a refused deploy the app says %q, want v2", body)
	}
	if a := statusOf(t, k).app(name); a == nil || a.LastResult != "failed" || a.Live == nil || a.Live.Digest != digestOf(t, v2) {
		t.Fatalf("status after the refused deploy: %+v", a)
	}

	logs, _ := mustCLI(t, 0, "logs", "-c", k.config(), name, "-o", "cat")
	for _, want := range []string{`message="v1"`, `message="v2"`, "demoapp exiting with 3 as asked"} {
		if !strings.Contains(logs, want) {
			t.Errorf("keter logs lacks %q (every version's lines):\n%s", want, logs)
		}
	}
	if logs, _ := mustCLI(t, 0, "logs", "-n", "1", "-o", "cat", name); strings.Count(strings.TrimSpace(logs), "\n") != 0 {
		t.Errorf("keter logs -n 1 printed more than a line:\n%s", logs)
	}

	mustCLI(t, 0, "rollback", "-c", k.config(), name)
	if a := statusOf(t, k).app(name); a == nil || a.Live == nil || a.Live.Digest != digestOf(t, v1) {
		t.Fatalf("status after rollback: %+v, want v1's digest live", a)
	}
	mustServe(t, k, host, "v1")
	// Rolling back again goes to the version live before v1, i.e. v2.
	mustCLI(t, 0, "rollback", "-c", k.config(), name)
	if a := statusOf(t, k).app(name); a == nil || a.Live == nil || a.Live.Digest != digestOf(t, v2) {
		t.Fatalf("status after the second rollback: %+v, want v2's digest live", a)
	}
	mustServe(t, k, host, "v2")
	if kept, _ := os.ReadDir(filepath.Join(k.Root, "etc", "bundles", name)); len(kept) != 2 {
		t.Errorf("kept bundles %v, want keep-bundles=2 of them", names(kept))
	}
	_, errOut = mustCLI(t, 1, "rollback", "-c", k.config(), "nosuchapp")
	if !strings.Contains(errOut, "no such app") {
		t.Errorf("rollback of an unknown app: %s", errOut)
	}
}

// TestCLIUsage: exit codes scripts rely on, without a daemon.
func TestCLIUsage(t *testing.T) {
	root := t.TempDir()
	cfg := filepath.Join(root, "keter-config.yaml")
	if err := os.WriteFile(cfg, []byte("root: "+root+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(root, "good.keter")
	testkit.Bundle(t, good, map[string]testkit.File{"config/keter.yaml": {Body: []byte("exec: ../run\nhost: good.test\n")}, "run": {Mode: 0o755}})
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--help"}, 0, "keter deploy"},
		{[]string{"deploy", "--help"}, 0, "Exit status"},
		{[]string{"status", "-h"}, 0, "--json"},
		{[]string{"deploy"}, 2, "wrong number of arguments"},
		{[]string{"status", "--bogus"}, 2, "bogus"},
		{[]string{"logs"}, 2, "Usage"},
		{[]string{"rollback", "a", "b"}, 2, "Usage"},
		{[]string{"postgres", "drop", "app"}, 2, "--yes"},
		{[]string{"postgres", "create", "app"}, 2, "unknown postgres command"},
		{[]string{"nosuchcommand"}, 2, "unknown command"},
		{[]string{"status", "-c", cfg}, 1, "keter is not running"},
		{[]string{"deploy", "-c", cfg, good}, 1, "keter is not running"},
		{[]string{"status", "-c", filepath.Join(root, "missing.yaml")}, 1, "reading keter config"},
	} {
		t.Run(strings.Join(c.args, "_"), func(t *testing.T) {
			out, errOut, code := cli(t, c.args...)
			if code != c.code || !strings.Contains(out+errOut, c.want) {
				t.Fatalf("exit %d, want %d; output lacks %q?\n%s%s", code, c.code, c.want, out, errOut)
			}
		})
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "incoming")); len(entries) != 0 {
		t.Errorf("deploy without a daemon placed %v", names(entries))
	}
	// --no-wait only places the bundle.
	os.MkdirAll(filepath.Join(root, "incoming"), 0o755)
	mustCLI(t, 0, "deploy", "--no-wait", "-c", cfg, good)
	if digestOf(t, filepath.Join(root, "incoming", "good.keter")) != digestOf(t, good) {
		t.Fatal("deploy --no-wait did not place the bundle")
	}
}

// TestCLIBundleAndCheck builds and checks good and bad app folders.
func TestCLIBundleAndCheck(t *testing.T) {
	root := t.TempDir()
	mkapp := func(name, yaml string) string {
		dir := filepath.Join(root, name)
		os.MkdirAll(filepath.Join(dir, "config"), 0o755)
		os.WriteFile(filepath.Join(dir, "config", "keter.yaml"), []byte(yaml), 0o644)
		os.WriteFile(filepath.Join(dir, "run"), []byte("#!/bin/sh\n"), 0o755)
		return dir
	}
	good := mkapp("goodapp", "stanzas:\n  - type: webapp\n    exec: ../run\n    host: good.test\n")
	bad := mkapp("badapp", "stanzas:\n  - type: webapp\n    exec: ../run\n    host: \"bad host!\"\n  - type: redirect\n")

	out, _ := mustCLI(t, 0, "bundle", good, "-o", filepath.Join(root, "goodapp.keter"))
	if !strings.Contains(out, "good.test") {
		t.Errorf("bundle output: %s", out)
	}
	out, _ = mustCLI(t, 0, "check", filepath.Join(root, "goodapp.keter"))
	if !strings.Contains(out, "ok") || !strings.Contains(out, "good.test") {
		t.Errorf("check output: %s", out)
	}
	// -zstd: a zstd tarball that check (keter's own unpack) accepts.
	zapp := filepath.Join(root, "goodzst.keter")
	mustCLI(t, 0, "bundle", "-zstd", "-o", zapp, good)
	if b, err := os.ReadFile(zapp); err != nil || !bytes.HasPrefix(b, []byte{0x28, 0xb5, 0x2f, 0xfd}) {
		t.Errorf("keter bundle -zstd did not write a zstd stream: %v", err)
	}
	out, _ = mustCLI(t, 0, "check", zapp)
	if !strings.Contains(out, "ok") || !strings.Contains(out, "good.test") {
		t.Errorf("check of the zstd bundle: %s", out)
	}
	// Without -o the bundle is named after the folder, in the current folder.
	cmd := exec.Command(keterBinary(t), "bundle", "goodapp")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("keter bundle goodapp: %v\n%s", err, b)
	}
	if _, err := os.Stat(filepath.Join(root, "goodapp.keter")); err != nil {
		t.Fatal(err)
	}

	_, errOut := mustCLI(t, 1, "bundle", bad, "-o", filepath.Join(root, "badapp.keter"))
	if !strings.Contains(errOut, "bad host!") {
		t.Errorf("bundle of a bad folder does not name the bad host:\n%s", errOut)
	}
	if _, err := os.Stat(filepath.Join(root, "badapp.keter")); err == nil {
		t.Error("a bundle was written from a bad folder")
	}
	badBundle := filepath.Join(root, "badapp.keter")
	testkit.Bundle(t, badBundle, map[string]testkit.File{"config/keter.yaml": {Body: []byte("exec: ../run\nhost: \"bad host!\"\n")}})
	_, errOut = mustCLI(t, 1, "check", badBundle)
	if !strings.Contains(errOut, "bad host!") {
		t.Errorf("check of a bad bundle does not name the bad host:\n%s", errOut)
	}
	notGzip := filepath.Join(root, "junk.keter")
	os.WriteFile(notGzip, []byte("not a tarball"), 0o644)
	mustCLI(t, 1, "check", notGzip)
	mustCLI(t, 1, "check", filepath.Join(root, "missing.keter"))
}

// mustServe: the front door answers with body now, not eventually, on
// every new connection (each may meet another nginx worker).
func mustServe(t *testing.T, k *keter, host, body string) {
	t.Helper()
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	// The switch contract: within nginx.SwitchBound of the switch nginx may
	// still send a request on a connection it kept to the old version;
	// after it, every request gets the new one.
	returned := time.Now()
	bound := returned.Add(nginx.SwitchBound + 300*time.Millisecond)
	for i, ok := 0, 0; ok < 20; i++ {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/", k.Port), nil)
		req.Host = host
		resp, err := fresh.Do(req)
		if err != nil {
			t.Fatalf("request %d after the command returned: %v", i, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 && strings.TrimSpace(string(got)) == body {
			ok++
			continue
		}
		if resp.StatusCode != 200 || time.Now().After(bound) {
			t.Fatalf("request %d, %s after the command returned: %s answers %d %q, want 200 %q",
				i, time.Since(returned).Round(time.Millisecond), host, resp.StatusCode, got, body)
		}
		ok = 0
		time.Sleep(10 * time.Millisecond)
	}
}
