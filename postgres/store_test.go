package postgres

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"gopkg.in/yaml.v3"
)

func TestParseKeterFile(t *testing.T) {
	b, err := os.ReadFile("testdata/keter-postgres.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got, err := parse(b, "testdata")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]Entry{
		"2048":    {Name: "2048kqzjxbwmtd", User: "2048plmnbvcxzq", Pass: "hvnmqrtsaw", Server: "localhost", Port: 5432},
		"blog":    {Name: "blogjqhzkxwmtb", User: "blogxnvbsoqpaz", Pass: "mfkdjsaqwe", Server: "db.example.com", Port: 6543},
		"old-app": {Name: "old_appqwertyuio", User: "old_appasdfghjkl", Pass: "zxcvbnmasd", Server: "localhost", Port: 5432},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseAcceptsUnquotedScalars(t *testing.T) {
	// Hand-edited files may leave numeric app names and passwords unquoted.
	got, err := parse([]byte("2048:\n  name: n\n  user: u\n  pass: 12345\n"), "x")
	if err != nil {
		t.Fatal(err)
	}
	if e := got["2048"]; e.Pass != "12345" || e.Port != 5432 {
		t.Errorf("got %+v", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"not a map", "- a\n- b\n", "cannot unmarshal"},
		{"missing pass", "a: {name: n, user: u}\n", `app "a": pass is empty`},
		{"every problem reported", "a: {name: n, user: u}\nb: {user: u, pass: p}\n", `app "b": name is empty`},
		{"port out of range", "a: {name: n, user: u, pass: p, port: 70000}\n", "port 70000 is out of range"},
		{"NUL in a name", "a: {name: \"n\\0\", user: u, pass: p}\n", "name contains a NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(tt.yaml), "f")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestParseEmpty(t *testing.T) {
	for _, in := range []string{"", "{}\n", "null\n"} {
		got, err := parse([]byte(in), "f")
		if err != nil || got == nil || len(got) != 0 {
			t.Errorf("parse(%q) = %v, %v; want an empty map", in, got, err)
		}
	}
}

func TestSaveLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc") // save must work once lock made it
	s := store{dir: dir}
	if m, err := s.load(); err != nil || len(m) != 0 {
		t.Fatalf("load of a missing file = %v, %v", m, err)
	}
	unlock, err := s.lock()
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	in := map[string]Entry{
		"a": {Name: "a_db", User: "a_role", Pass: "p'w:\"#", Server: "127.0.0.1", Port: 5432},
		"b": {Name: "b_db", User: "b_role", Pass: "x", Server: "::1", Port: 6000},
	}
	if err := s.save(in); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %o, want 0600", fi.Mode().Perm())
	}
	out, err := s.load()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("loaded %+v, want %+v", out, in)
	}
	// Exactly Keter's keys and types, so the Haskell Keter can read it back.
	b, _ := os.ReadFile(s.path())
	var raw map[string]map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	for app, e := range raw {
		if len(e) != 5 {
			t.Errorf("%s: keys %v, want name user pass server port", app, e)
		}
		for _, k := range []string{"name", "user", "pass", "server"} {
			if _, ok := e[k].(string); !ok {
				t.Errorf("%s: %s = %#v, want a string", app, k, e[k])
			}
		}
		if _, ok := e["port"].(int); !ok {
			t.Errorf("%s: port = %#v, want an int", app, e["port"])
		}
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("etc holds %v, want only %s (no temp files left)", ents, FileName)
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name string
		e    Entry
	}{
		{"plain", Entry{Name: "app_db", User: "app_role", Pass: "abcXYZ123", Server: "127.0.0.1", Port: 5432}},
		{"needs escaping", Entry{Name: "we/ird?db #x", User: "u@s:er", Pass: "p@ss:/w?o#rd% é", Server: "db.example.com", Port: 6543}},
		{"ipv6", Entry{Name: "d", User: "u", Pass: "p", Server: "::1", Port: 5432}},
		{"unix socket", Entry{Name: "d", User: "u", Pass: "p", Server: "/var/run/postgresql", Port: 5433}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := tt.e.Env()
			for k, want := range map[string]string{"PGHOST": tt.e.Server, "PGUSER": tt.e.User, "PGDATABASE": tt.e.Name, "PGPASS": tt.e.Pass, "PGPASSWORD": tt.e.Pass} {
				if env[k] != want {
					t.Errorf("%s = %q, want %q", k, env[k], want)
				}
			}
			cfg, err := pgx.ParseConfig(env["DATABASE_URL"])
			if err != nil {
				t.Fatalf("DATABASE_URL %q: %v", env["DATABASE_URL"], err)
			}
			if cfg.Host != tt.e.Server || int(cfg.Port) != tt.e.Port || cfg.User != tt.e.User || cfg.Password != tt.e.Pass || cfg.Database != tt.e.Name {
				t.Errorf("DATABASE_URL %q parses to host=%q port=%d user=%q password=%q db=%q", env["DATABASE_URL"], cfg.Host, cfg.Port, cfg.User, cfg.Password, cfg.Database)
			}
		})
	}
}

func TestWithServer(t *testing.T) {
	tests := []struct{ name, dsn string }{
		{"keyword form", "host=/var/run/postgresql user=keter password='a b\\'c' dbname=postgres"},
		{"empty", ""},
		{"url", "postgres://keter:a%20b%27c@localhost:5432/postgres?host=/tmp&sslmode=disable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			base, err := pgx.ParseConfig(tt.dsn)
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := pgx.ParseConfig(withServer(tt.dsn, "db'.example.com", 6543))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != "db'.example.com" || cfg.Port != 6543 {
				t.Errorf("host %q port %d", cfg.Host, cfg.Port)
			}
			if cfg.User != base.User || cfg.Password != base.Password || cfg.Database != base.Database {
				t.Errorf("credentials changed: %q %q %q, want %q %q %q", cfg.User, cfg.Password, cfg.Database, base.User, base.Password, base.Database)
			}
		})
	}
}
