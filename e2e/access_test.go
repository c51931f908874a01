package e2e

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keter-systemd/keter/internal/pebble"
	"github.com/keter-systemd/keter/internal/testkit"
)

// accessBundle writes a bundle of the demo app, a static folder and
// keter.yaml y.
func accessBundle(t *testing.T, path, y string) {
	t.Helper()
	demo, err := os.ReadFile(testkit.DemoApp(t))
	if err != nil {
		t.Fatal(err)
	}
	testkit.Bundle(t, path, map[string]testkit.File{
		"config/keter.yaml": {Body: []byte(y)},
		"bin/demoapp":       {Body: demo, Mode: 0o755},
		"static/index.html": {Body: []byte("static\n")},
	})
}

// getFrom fetches path from keter's listener for host, from the loopback
// address src, with basic-auth credentials when user is set.
func (k *keter) getFrom(src, host, path, user, pass string) (int, string, error) {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", fmt.Sprintf("127.0.0.1:%d", k.Port))
		}}}
	req, err := http.NewRequest("GET", "http://"+host+path, nil)
	if err != nil {
		return 0, "", err
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b)), err
}

// TestAccessRules deploys a bundle with Keter's basic-auth (plain creds,
// as Keter writes them) on a webapp, a static-files and a reverse-proxy
// stanza, local, deny-from and a rate limit, and checks each through the
// real nginx; the password is nowhere under keter's root, in nginx's
// config or in the journal, and nginx's user file is root:workers 0640.
func TestAccessRules(t *testing.T) {
	k := startKeter(t, "")
	tok := testkit.Token()
	password := "pw-" + testkit.Token() + "-" + testkit.Token()
	backend := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "backend") })}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go backend.Serve(ln)
	t.Cleanup(func() { backend.Close() })
	hosts := map[string]string{}
	for _, h := range []string{"web", "static", "rp", "local", "deny", "limit"} {
		hosts[h] = h + "-" + tok + ".test"
	}
	y := fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, web]
    host: %s
    middleware:
      - basic-auth:
          realm: Staging
          creds: {alice: %q}
  - type: static-files
    root: ../static
    host: %s
    middleware:
      - {basic-auth: {creds: {alice: %q}}}
  - type: reverse-proxy
    reversing-host: %s
    reversed-host: 127.0.0.1
    reversed-port: %d
    middleware:
      - {basic-auth: {creds: {alice: %q}}}
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, local]
    host: %s
    middleware:
      - {local: {}}
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, deny]
    host: %s
    deny-from: [127.0.0.2]
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, limit]
    host: %s
    middleware:
      - rate-limiter:
          zone_by: default
          throttles:
            - {name: ip, limit: 3, period: 60, algorithm: FixedWindow, identifier_by: ip}
`, hosts["web"], password, hosts["static"], password, hosts["rp"], ln.Addr().(*net.TCPAddr).Port, password,
		hosts["local"], hosts["deny"], hosts["limit"])
	src := filepath.Join(t.TempDir(), "access.keter")
	accessBundle(t, src, y)
	k.Drop(src, "access.keter")
	// Served once keter called it live (nginx's old workers may take new
	// connections for a moment after a reload), each host by the new config.
	eventually(t, 60*time.Second, func() error {
		if !strings.Contains(k.Log(), `msg="version live" app=access `) {
			return fmt.Errorf("not live yet")
		}
		for name, want := range map[string]string{"web": "web", "static": "static", "rp": "backend", "local": "local", "deny": "deny", "limit": "limit"} {
			if code, body, err := k.getFrom("127.0.0.1", hosts[name], "/", "alice", password); err != nil || code != 200 || body != want {
				return fmt.Errorf("%s: %d %q %v", name, code, body, err)
			}
		}
		return nil
	})

	// basic-auth on each kind of stanza.
	for name, want := range map[string]string{"web": "web", "static": "static", "rp": "backend"} {
		for _, try := range []struct {
			user, pass string
			code       int
		}{{"", "", 401}, {"alice", "wrong", 401}, {"mallory", password, 401}, {"alice", password, 200}} {
			code, body, err := k.getFrom("127.0.0.1", hosts[name], "/", try.user, try.pass)
			if err != nil || code != try.code || (code == 200 && body != want) {
				t.Errorf("%s as %q: %d %q %v, want %d", name, try.user, code, body, err, try.code)
			}
		}
	}
	// local: the host itself only, Keter's default status and message.
	if code, body, err := k.getFrom("127.0.0.1", hosts["local"], "/", "", ""); err != nil || code != 200 || body != "local" {
		t.Errorf("local from 127.0.0.1: %d %q %v", code, body, err)
	}
	if code, body, err := k.getFrom("127.0.0.2", hosts["local"], "/", "", ""); err != nil || code != 401 || body != "Unauthorized Accessing from Localhost ONLY" {
		t.Errorf("local from 127.0.0.2: %d %q %v, want Keter's 401", code, body, err)
	}
	// deny-from.
	if code, _, err := k.getFrom("127.0.0.2", hosts["deny"], "/", "", ""); err != nil || code != 403 {
		t.Errorf("denied client: %d %v, want 403", code, err)
	}
	if code, _, err := k.getFrom("127.0.0.1", hosts["deny"], "/", "", ""); err != nil || code != 200 {
		t.Errorf("other client: %d %v, want 200", code, err)
	}
	// 3 a minute: three pass, then 429 (not 503).
	for i := 1; i <= 4; i++ {
		want := 200
		if i == 4 {
			want = 429
		}
		if code, _, err := k.getFrom("127.0.0.3", hosts["limit"], "/", "", ""); err != nil || code != want {
			t.Errorf("request %d: %d %v, want %d", i, code, err, want)
		}
	}

	// nginx's user files: root's, the workers' group, 0640.
	files, _ := filepath.Glob(filepath.Join(k.Root, "etc", "nginx", "auth", "*.htpasswd"))
	if len(files) != 3 {
		t.Fatalf("user files %v, want one per basic-auth stanza", files)
	}
	wu, err := user.Lookup("www-data")
	if err != nil {
		t.Fatal(err)
	}
	gid, _ := strconv.Atoi(wu.Gid)
	for _, f := range files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o640 || st.Uid != 0 || int(st.Gid) != gid {
			t.Errorf("%s: %v %d:%d, want 0640 0:%d", f, fi.Mode().Perm(), st.Uid, st.Gid, gid)
		}
	}
	// The password: nowhere under keter's root (the uploaded .keter is
	// the owner's compressed archive), in nginx's config or the journal.
	filepath.WalkDir(k.Root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() || strings.HasSuffix(p, ".keter") {
			return nil
		}
		if data, err := os.ReadFile(p); err == nil && strings.Contains(string(data), password) {
			t.Errorf("%s holds the plain password", p)
		}
		return nil
	})
	for _, unit := range []string{k.Unit, k.Nginx} {
		out, _ := exec.Command("journalctl", "--no-pager", "-o", "cat", "-u", unit).CombinedOutput()
		if strings.Contains(string(out), password) {
			t.Errorf("the journal of %s holds the plain password", unit)
		}
	}
}

// TestAccessACMEChallenge: Pebble validates HTTP-01 through nginx for a
// host behind basic auth and a deny-from that matches Pebble's own
// address: keter's challenge path is not behind the rules.
func TestAccessACMEChallenge(t *testing.T) {
	port := testkit.FreePort(t)
	ca := testkit.Pebble(t, pebble.Options{HTTPPort: port})
	k := startACMEKeter(t, port, ca)
	host := "guarded-" + testkit.Token() + ".test"
	k.deploy("guarded", fmt.Sprintf(`stanzas:
  - type: webapp
    exec: ../bin/demoapp
    args: [--message, guarded]
    host: %s
    deny-from: [127.0.0.1]
    middleware:
      - {basic-auth: {creds: {alice: secret}}}
`, host))
	c := k.https(k.caRoots())
	eventually(t, 90*time.Second, func() error {
		resp, _, err := getTLS(c, host, "/")
		if err != nil {
			return err // no certificate from Pebble yet
		}
		if resp.StatusCode != 403 {
			return fmt.Errorf("https: %d, want 403 from deny-from", resp.StatusCode)
		}
		return nil
	})
	if code, _, err := k.Get(host, "/"); err != nil || code != 403 {
		t.Errorf("plain http: %d %v, want 403", code, err)
	}
}
