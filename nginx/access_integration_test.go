package nginx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/internal/testkit"
)

// fromAddr is a client whose connections to addr come from the loopback
// address src (127.0.0.0/8 is all the host's), so address rules can be
// tested without leaving loopback.
func fromAddr(addr, src string) *http.Client {
	c := client(addr)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c.Transport.(*http.Transport).DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
	return c
}

func getAuth(c *http.Client, url, host, user, pass string) (int, string, error) {
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = host
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestManagedAccess runs every access rule against a real nginx: basic
// auth with each hash scheme and an operator's file on all three kinds
// of stanza, local, allow/deny and the rate limit; keter's own locations
// (ACME challenge, healthcheck) stay open.
func TestManagedAccess(t *testing.T) {
	testkit.NeedSystemd(t)
	bin := testkit.NeedBinary(t, "nginx", "apt-get install nginx-light")
	root := testkit.Root(t)
	port := testkit.FreePort(t)
	prefix := filepath.Join(root, "etc", "nginx")
	certs := &fakeCerts{t: t, ready: map[string]bool{}}
	certs.a = ACME{Dir: filepath.Join(prefix, "acme"), Fallback: filepath.Join(prefix, "acme-fallback.pem"),
		Challenge: filepath.Join(prefix, "acme-challenge.sock"), Waiting: certs.waiting}
	if err := os.MkdirAll(certs.a.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("unix", certs.a.Challenge)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(certs.a.Challenge, 0o666)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "challenge %s", strings.TrimPrefix(r.URL.Path, "/.well-known/acme-challenge/"))
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	g, _, err := config.Parse([]byte(fmt.Sprintf("root: %s\nlisteners:\n  - {host: 127.0.0.1, port: %d}\nhealthcheck-path: /keter-health\nacme: {email: ops@example.com}\nnginx: {binary: %s}\n",
		root, port, bin)), root)
	if err != nil {
		t.Fatal(err)
	}
	m := New(g, newSDUnits(t), slog.New(slog.NewTextHandler(os.Stderr, nil)), WithUnitName("keter-nginx-test-"+testkit.Token()+".service"), WithACME(certs))
	if err := m.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { m.Stop(context.Background()) })

	goHash, err := bcrypt.GenerateFromPassword([]byte(testPassword), bundle.BcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	users := map[string]any{"gobcrypt": string(goHash)}
	for scheme, h := range testHashes {
		users[scheme] = h
	}
	opsFile := filepath.Join(root, "ops.htpasswd")
	writeFile(t, opsFile, "ops:"+testHashes["sha512"]+"\n")
	writeFile(t, filepath.Join(root, "public", "index.html"), "static\n")
	web := backend(t, "web")
	auth := func(cfg map[string]any) []bundle.Middleware {
		return []bundle.Middleware{{Name: "basic-auth", Config: cfg}}
	}
	wa := webapp("web.test")
	wa.WebApp.Middleware = auth(map[string]any{"realm": "Staging", "hashed-creds": users})
	st := bundle.Stanza{Type: bundle.TypeStaticFiles, StaticFiles: &bundle.StaticFiles{Root: "public", Hosts: []string{"static.test"},
		Middleware: auth(map[string]any{"htpasswd": opsFile})}}
	rp := bundle.Stanza{Type: bundle.TypeReverseProxy, ReverseProxy: &bundle.ReverseProxy{ReversedHost: "127.0.0.1", ReversedPort: portOf(t, web),
		ReversingHost: "rp.test", Middleware: auth(map[string]any{"hashed-creds": map[string]any{"rp": testHashes["bcrypt"]}})}}
	local := webapp("local.test")
	local.WebApp.Middleware = []bundle.Middleware{{Name: "local", Config: map[string]any{"status": 403, "message": "host only"}}}
	acl := webapp("acl.test")
	acl.WebApp.Access = bundle.Access{AllowFrom: []string{"127.0.0.0/29"}, DenyFrom: []string{"127.0.0.2"}}
	limited := webapp("limit.test")
	limited.WebApp.Middleware = []bundle.Middleware{{Name: "rate-limiter", Config: map[string]any{"zone_by": "default", "throttles": []any{
		map[string]any{"name": "ip", "limit": 5, "period": 60, "algorithm": "FixedWindow", "identifier_by": "ip"}}}}}
	wp := portOf(t, web)
	apps := []App{{Name: "acc", Dir: root, Ports: one(map[int]int{0: wp, 3: wp, 4: wp, 5: wp}),
		Config: &bundle.AppConfig{Stanzas: []bundle.Stanza{wa, st, rp, local, acl, limited}}}}
	if err := m.Apply(t.Context(), apps); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	base := "http://" + addr
	c := client(addr)
	// nginx's old workers may take a connection for a moment after the
	// reload: wait until the new config answers for every host.
	eventually(t, "the new config", func() error {
		for _, h := range []string{"web.test", "static.test", "rp.test", "local.test", "acl.test", "limit.test"} {
			if code, _, err := getAuth(fromAddr(addr, "127.0.0.4"), base+"/", h, "", ""); err != nil || code == 404 {
				return fmt.Errorf("%s: %d %v", h, code, err)
			}
		}
		return nil
	})

	// Basic auth: without, wrong, right, on each kind of stanza and scheme.
	type login struct{ host, user string }
	logins := []login{{"static.test", "ops"}, {"rp.test", "rp"}}
	for u := range users {
		logins = append(logins, login{"web.test", u})
	}
	for _, l := range logins {
		for _, try := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {l.user, "wrong", 401}, {"nobody", testPassword, 401}, {l.user, testPassword, 200}} {
			code, body, err := getAuth(c, base+"/", l.host, try.user, try.pass)
			if err != nil || code != try.want {
				t.Errorf("%s as %q/%q: %d %q %v, want %d", l.host, try.user, try.pass, code, body, err, try.want)
			}
		}
	}
	// The user file: root's, the workers' group, 0640.
	files, _ := filepath.Glob(filepath.Join(prefix, "auth", "*.htpasswd"))
	if len(files) != 2 {
		t.Fatalf("keter's user files %v, want web's and rp's", files)
	}
	wu, _ := user.Lookup(workerUser())
	gid, _ := strconv.Atoi(wu.Gid)
	for _, f := range append(files, filepath.Join(prefix, "auth")) {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		sys := fi.Sys().(*syscall.Stat_t)
		want := os.FileMode(0o640)
		if fi.IsDir() {
			want = 0o750
		}
		if fi.Mode().Perm() != want || sys.Uid != 0 || int(sys.Gid) != gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v 0:%d", f, fi.Mode().Perm(), sys.Uid, sys.Gid, want, gid)
		}
	}
	// keter's own locations are not behind the rules.
	for _, path := range []string{"/.well-known/acme-challenge/tok123", "/keter-health"} {
		code, body, err := getAuth(c, base+path, "web.test", "", "")
		if err != nil || code != 200 {
			t.Errorf("%s on a site with basic auth: %d %q %v, want 200", path, code, body, err)
		}
	}

	// local: the host itself (127.0.0.1) only.
	if code, _, err := getAuth(c, base+"/", "local.test", "", ""); err != nil || code != 200 {
		t.Errorf("local from 127.0.0.1: %d %v", code, err)
	}
	if code, body, err := getAuth(fromAddr(addr, "127.0.0.2"), base+"/", "local.test", "", ""); err != nil || code != 403 || body != "host only" {
		t.Errorf("local from 127.0.0.2: %d %q %v, want 403 host only", code, body, err)
	}

	// allow-from 127.0.0.0/29 but deny-from 127.0.0.2.
	for src, want := range map[string]int{"127.0.0.1": 200, "127.0.0.2": 403, "127.0.0.3": 200, "127.0.0.9": 403} {
		if code, _, err := getAuth(fromAddr(addr, src), base+"/", "acl.test", "", ""); err != nil || code != want {
			t.Errorf("acl.test from %s: %d %v, want %d", src, code, err, want)
		}
	}

	// 5 a minute: five pass at once, the sixth is refused with 429; another
	// client has its own count.
	start := time.Now()
	for i := 1; i <= 6; i++ {
		want := 200
		if i == 6 {
			want = 429
		}
		if code, _, err := getAuth(c, base+"/", "limit.test", "", ""); err != nil || code != want {
			t.Errorf("request %d to limit.test: %d %v, want %d", i, code, err, want)
		}
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Logf("the six requests took %s: the limit's refill (12 s) may have let one more through", d)
	}
	if code, _, err := getAuth(fromAddr(addr, "127.0.0.3"), base+"/", "limit.test", "", ""); err != nil || code != 200 {
		t.Errorf("limit.test from another client: %d %v, want 200", code, err)
	}

	// Removing the rules is a config change like any other.
	apps[0].Config.Stanzas = []bundle.Stanza{webapp("web.test")}
	if err := m.Apply(t.Context(), apps); err != nil {
		t.Fatalf("Apply without rules: %v", err)
	}
	eventually(t, "web.test open again", func() error {
		if code, _, err := getAuth(c, base+"/", "web.test", "", ""); err != nil || code != 200 {
			return fmt.Errorf("%d %v", code, err)
		}
		return nil
	})
	if left, _ := filepath.Glob(filepath.Join(prefix, "auth", "*.htpasswd")); len(left) != 0 {
		t.Errorf("unused user files left: %v", left)
	}
}
