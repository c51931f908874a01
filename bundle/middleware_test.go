package bundle

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

const accessYAML = `stanzas:
  - type: webapp
    exec: ../bin/app
    host: web.example.com
    allow-from: [192.0.2.0/24, "2001:db8::1"]
    deny-from: [192.0.2.7]
    middleware:
      - basic-auth:
          realm: Staging
          creds:
            alice: "open sesame"
            bob: 12345
      - local: {status: 403, message: host only}
      - rate-limiter:
          zone_by: default
          throttles:
            - {name: ip, limit: 4, period: 5, algorithm: FixedWindow, identifier_by: ip}
  - type: static-files
    root: ../public
    host: static.example.com
    middleware:
      - basic-auth: {htpasswd: /etc/keter/static.htpasswd}
  - type: reverse-proxy
    reversing-host: rp.example.com
    reversed-host: 127.0.0.1
    reversed-port: 9000
    deny-from: [10.0.0.0/8]
    middleware:
      - basic-auth: {creds: {ops: "s3cret:with colon"}}
`

// TestLoadHashesCreds: Keter's plain creds leave Load as bcrypt hashes,
// in the model and in the unpacked keter.yaml, which keter alone reads.
func TestLoadHashesCreds(t *testing.T) {
	dir := t.TempDir()
	writeTree(t, dir, map[string]string{"config/keter.yaml": accessYAML, "bin/app": "#!/bin/sh\n", "public/index.html": "x"})
	os.Chmod(filepath.Join(dir, "bin/app"), 0o755)
	c, warns, err := LoadWithWarnings(dir)
	if err != nil {
		t.Fatalf("Load: %v (warnings %v)", err, warns)
	}
	if len(warns) != 0 {
		t.Errorf("warnings: %v", warns)
	}
	w := c.Stanzas[0].WebApp
	if strings.Join(w.AllowFrom, " ") != "192.0.2.0/24 2001:db8::1/128" || strings.Join(w.DenyFrom, " ") != "192.0.2.7/32" {
		t.Errorf("allow-from %v deny-from %v", w.AllowFrom, w.DenyFrom)
	}
	ba, err := w.Middleware[0].BasicAuth()
	if err != nil {
		t.Fatal(err)
	}
	if ba.Realm != "Staging" || len(ba.Hashes) != 2 || ba.Hashes[0].User != "alice" || ba.Hashes[1].User != "bob" {
		t.Fatalf("basic-auth %+v", ba)
	}
	for u, pw := range map[int]string{0: "open sesame", 1: "12345"} {
		if err := bcrypt.CompareHashAndPassword([]byte(ba.Hashes[u].Hash), []byte(pw)); err != nil {
			t.Errorf("%s's hash does not match the password: %v", ba.Hashes[u].User, err)
		}
	}
	rp, err := c.Stanzas[2].ReverseProxy.Middleware[0].BasicAuth()
	if err != nil || len(rp.Hashes) != 1 || bcrypt.CompareHashAndPassword([]byte(rp.Hashes[0].Hash), []byte("s3cret:with colon")) != nil {
		t.Fatalf("reverse-proxy basic-auth %+v %v", rp, err)
	}
	if st, err := c.Stanzas[1].StaticFiles.Middleware[0].BasicAuth(); err != nil || st.File != "/etc/keter/static.htpasswd" || st.Realm != DefaultRealm {
		t.Fatalf("static-files basic-auth %+v %v", st, err)
	}
	if l, err := w.Middleware[1].Local(); err != nil || l.Status != 403 || l.Message != "host only" {
		t.Errorf("local %+v %v", l, err)
	}
	if rl, err := w.Middleware[2].RateLimiter(); err != nil || len(rl.Throttles) != 1 || rl.Throttles[0].Limit != 4 || rl.Throttles[0].Period != 5 {
		t.Errorf("rate-limiter %+v %v", rl, err)
	}
	file := filepath.Join(dir, "config/keter.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	for _, pw := range []string{"open sesame", "12345", "s3cret"} {
		if strings.Contains(string(data), pw) {
			t.Errorf("the unpacked keter.yaml still holds %q:\n%s", pw, data)
		}
	}
	if fi, _ := os.Stat(file); fi.Mode().Perm() != 0o600 {
		t.Errorf("rewritten keter.yaml mode %v, want 0600", fi.Mode().Perm())
	}
	// Loading again (keter restarts) keeps the same users.
	again, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if b2, _ := again.Stanzas[0].WebApp.Middleware[0].BasicAuth(); b2 == nil || len(b2.Hashes) != 2 || b2.Hashes[0] != ba.Hashes[0] {
		t.Errorf("second load: %+v", b2)
	}
}

// TestAccessRefused: hostile or unsupported access settings are refused
// by the parser with the key's path, and no message shows a password.
func TestAccessRefused(t *testing.T) {
	for name, c := range map[string]struct{ yaml, want string }{
		"cidr syntax":        {"allow-from: [\"10.0.0.0/8; allow all\"]", "allow-from[0]: invalid value"},
		"cidr host bits":     {"deny-from: [10.0.0.1/8]", "deny-from[0]: invalid value: \"10.0.0.1/8\" has bits set"},
		"not a list":         {"deny-from: 10.0.0.1", "deny-from: invalid value: must be a list"},
		"hash newline":       {"middleware: [{basic-auth: {hashed-creds: {u: \"$apr1$keter01$p38b6Jqo8xJkYwnc689lM0\\nx:y\"}}}]", "hashed-creds.u: invalid value: not a password hash"},
		"hash syntax":        {"middleware: [{basic-auth: {hashed-creds: {u: '$6$x$y\"; }'}}}]", "hashed-creds.u: invalid value"},
		"user colon":         {"middleware: [{basic-auth: {creds: {\"a:b\": pw}}}]", "creds.a:b: invalid value: user names"},
		"realm quotes":       {"middleware: [{basic-auth: {realm: 'a\"b', creds: {u: pw}}}]", "basic-auth.realm: invalid value"},
		"htpasswd relative":  {"middleware: [{basic-auth: {htpasswd: etc/users}}]", "basic-auth.htpasswd: invalid value"},
		"htpasswd syntax":    {"middleware: [{basic-auth: {htpasswd: '/etc/x;include'}}]", "basic-auth.htpasswd: invalid value"},
		"htpasswd and creds": {"middleware: [{basic-auth: {htpasswd: /etc/x, creds: {u: pw}}}]", "htpasswd and creds are exclusive"},
		"password newline":   {"middleware: [{basic-auth: {creds: {u: \"pw\\nsecretword\"}}}]", "creds.u: invalid value: password must not contain line breaks"},
		"no users":           {"middleware: [{basic-auth: {realm: r}}]", "basic-auth.creds: invalid value: required"},
		"local status":       {"middleware: [{local: {status: 99}}]", "local.status: invalid value"},
		"zone by header":     {"middleware: [{rate-limiter: {zone_by: {header: X}, throttles: [{name: a, limit: 1, period: 1, algorithm: FixedWindow, identifier_by: ip}]}}]", "rate-limiter.zone_by: invalid value"},
		"identifier header":  {"middleware: [{rate-limiter: {throttles: [{name: a, limit: 1, period: 1, algorithm: FixedWindow, identifier_by: {header: X}}]}}]", "throttles[0]: invalid value: identifier_by"},
		"no throttles":       {"middleware: [{rate-limiter: {zone_by: default}}]", "rate-limiter.throttles: invalid value: required"},
		"bad algorithm":      {"middleware: [{rate-limiter: {throttles: [{name: a, limit: 1, period: 1, algorithm: Magic, identifier_by: ip}]}}]", "throttles[0]: invalid value: algorithm"},
	} {
		t.Run(name, func(t *testing.T) {
			y := "stanzas:\n  - type: webapp\n    exec: ../bin/app\n    host: a.example.com\n    " + c.yaml + "\n"
			_, err := Parse([]byte(y))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want %q", err, c.want)
			}
			if strings.Contains(err.Error(), "secretword") {
				t.Fatalf("the error shows the password: %v", err)
			}
		})
	}
}

// TestHashPlainCredsMerges: creds beside hashed-creds join them; a file
// with no creds is left alone; anchors are refused rather than half done.
func TestHashPlainCredsMerges(t *testing.T) {
	data, err := os.ReadFile("testdata/parse/access.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fake := func(pw string) (string, error) { return "$2y$05$" + strings.Repeat("x", 53), nil }
	out, err := hashPlainCreds(data, fake)
	if err != nil || out == nil {
		t.Fatalf("hashPlainCreds: %v", err)
	}
	if strings.Contains(string(out), "open sesame") || strings.Contains(string(out), "12345") || strings.Contains(string(out), "creds:\n") {
		t.Fatalf("plain creds left:\n%s", out)
	}
	c, err := Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	ba, err := c.Stanzas[0].WebApp.Middleware[0].BasicAuth()
	if err != nil || len(ba.Hashes) != 2 || ba.Hashes[0].User != "alice" || ba.Hashes[1].User != "bob" {
		t.Fatalf("merged: %+v %v", ba, err)
	}
	if again, err := hashPlainCreds(out, fake); again != nil || err != nil {
		t.Fatalf("a second pass changed something: %v", err)
	}
	anchored := "x: &c {u: pw}\nstanzas:\n  - type: webapp\n    exec: a\n    host: a.com\n    middleware:\n      - basic-auth: {creds: *c}\n"
	if _, err := hashPlainCreds([]byte(anchored), fake); err == nil {
		t.Fatal("creds through an anchor were accepted")
	}
}
