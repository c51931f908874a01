package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"

	"github.com/keter-systemd/keter/internal/testkit"
)

func open(t testing.TB, dsn string) *Store {
	t.Helper()
	s, err := New(dsn, Options{LockTTL: 2 * time.Second, LockPoll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// seed is the same tree in every storage: names that differ in one
// component only ("a" and "ab"), and LIKE's wildcards (_ and %) in keys.
var seed = []string{
	"a/b/c.crt", "a/b/c.key", "a/d.json", "ab/x", "top",
	"acme/x_y/z", "acme/xzy/w", "pct/50%/v",
}

// TestSemantics runs every call certmagic makes on our store and on
// certmagic's own FileStorage with the same keys: they must agree. One
// known difference is left out: Load of a folder is fs.ErrNotExist here
// (there are no folders, only keys under a prefix), EISDIR there;
// certmagic loads files only.
func TestSemantics(t *testing.T) {
	db := testkit.Postgres(t)
	stores := map[string]certmagic.Storage{
		"postgres": open(t, db.DSN),
		"files":    &certmagic.FileStorage{Path: t.TempDir()},
	}
	ctx := t.Context()
	for name, s := range stores {
		for _, k := range seed {
			if err := s.Store(ctx, k, []byte("value of "+k)); err != nil {
				t.Fatalf("%s: Store %s: %v", name, k, err)
			}
		}
	}
	type step struct {
		name string
		do   func(certmagic.Storage) string
	}
	load := func(k string) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string {
			v, err := s.Load(ctx, k)
			return fmt.Sprintf("%q notexist=%v err=%v", v, errors.Is(err, fs.ErrNotExist), err != nil)
		}
	}
	stat := func(k string) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string {
			i, err := s.Stat(ctx, k)
			if err != nil {
				return fmt.Sprintf("notexist=%v", errors.Is(err, fs.ErrNotExist))
			}
			size := i.Size
			if !i.IsTerminal {
				size = -1 // a folder's size is the file system's business
			}
			fresh := time.Since(i.Modified) < time.Minute
			return fmt.Sprintf("key=%s terminal=%v size=%d fresh=%v", i.Key, i.IsTerminal, size, fresh)
		}
	}
	exists := func(k string) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string { return fmt.Sprint(s.Exists(ctx, k)) }
	}
	list := func(k string, rec bool) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string {
			keys, err := s.List(ctx, k, rec)
			slices.Sort(keys) // FileStorage walks folders first
			return fmt.Sprintf("%v notexist=%v", keys, errors.Is(err, fs.ErrNotExist))
		}
	}
	del := func(k string) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string {
			err := s.Delete(ctx, k)
			keys, _ := s.List(ctx, "", true)
			slices.Sort(keys)
			return fmt.Sprintf("err=%v left=%v", err, keys)
		}
	}
	store := func(k, v string) func(certmagic.Storage) string {
		return func(s certmagic.Storage) string {
			err := s.Store(ctx, k, []byte(v))
			got, _ := s.Load(ctx, k)
			return fmt.Sprintf("err=%v now=%q", err, got)
		}
	}
	steps := []step{
		{"load a file", load("a/b/c.crt")},
		{"load a missing key", load("a/b/nope")},
		{"stat a file", stat("a/b/c.key")},
		{"stat a folder", stat("a/b")},
		{"stat a missing key", stat("a/zz")},
		{"stat a component prefix", stat("a/b/c")},
		{"exists file", exists("a/d.json")},
		{"exists folder", exists("a")},
		{"exists component prefix", exists("a/b/c")},
		{"exists missing", exists("nope")},
		{"list root", list("", false)},
		{"list folder", list("a", false)},
		{"list folder recursive", list("a", true)},
		{"list root recursive", list("", true)},
		{"list underscore is no wildcard", list("acme/x_y", false)},
		{"list percent is no wildcard", list("pct/50%", true)},
		{"list missing", list("nope", false)},
		{"list a file", list("top", false)},
		{"overwrite", store("a/d.json", "new")},
		{"delete a file", del("a/b/c.key")},
		{"delete a missing key", del("nope/nope")},
		{"delete a folder, not its name's prefixes", del("a")},
		{"delete underscore is no wildcard", del("acme/x_y")},
		{"store after delete", store("a/again", "back")},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := map[string]string{}
			for name, s := range stores {
				got[name] = st.do(s)
			}
			if got["postgres"] != got["files"] {
				t.Errorf("postgres: %s\nfiles:    %s", got["postgres"], got["files"])
			}
		})
	}
}

// TestSchemaOnce: hosts that start together all create-or-find the
// tables; none fails on the race.
func TestSchemaOnce(t *testing.T) {
	db := testkit.Postgres(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		s := open(t, db.DSN)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Ping(t.Context()); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	s := open(t, db.DSN)
	var n int
	if err := s.do(t.Context(), func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'keter\\_certmagic%'").Scan(&n)
	}); err != nil || n != 2 {
		t.Fatalf("%d tables, %v", n, err)
	}
	if err := s.Store(t.Context(), "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
}

// TestRedacted: nothing the store returns or reports names the password
// or quotes the connection string, even where pgx would.
func TestRedacted(t *testing.T) {
	db := testkit.Postgres(t)
	const secret = "S3cr3tPassw0rd"
	bad := []string{
		"postgres://" + db.Role + ":" + secret + "@127.0.0.1:notaport/" + db.Name,
		"postgres://" + db.Role + ":" + secret + "@[::1/" + db.Name,
		"host=127.0.0.1 port=x password=" + secret,
		"host=127.0.0.1 port=x password=abc\\ " + secret, // pgx's own masking shows this one
		"host=127.0.0.1 password='" + secret + " port=5432",
		"user=" + db.Role + " password=" + secret + " connect_timeout=soon",
		"postgres://" + db.Role + ":" + secret + "@127.0.0.1/" + db.Name + "?connect_timeout=soon",
	}
	for _, dsn := range bad {
		_, err := New(dsn, Options{})
		_, raw := pgx.ParseConfig(dsn)
		t.Logf("pgx: %v\nours: %v", raw, err)
		if err == nil {
			t.Errorf("%q parsed", dsn)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("the error names the password: %v", err)
		}
		if Validate(dsn) == nil || strings.Contains(Validate(dsn).Error(), secret) {
			t.Errorf("Validate(%q): %v", dsn, Validate(dsn))
		}
	}
	// Parses, but the server refuses it.
	for _, dsn := range []string{
		"host=127.0.0.1 port=5432 dbname=" + db.Name + " user=" + db.Role + " password=" + secret,
		"postgres://" + db.Role + ":" + secret + "@127.0.0.1:5432/" + db.Name + "?sslmode=disable",
		"host=127.0.0.1 port=1 dbname=" + db.Name + " user=" + db.Role + " password=" + secret + " connect_timeout=2",
	} {
		s := open(t, dsn)
		_, err := s.Load(t.Context(), "k")
		if err == nil {
			t.Fatalf("%s: connected with a wrong password", s)
		}
		for _, text := range []string{err.Error(), s.Health().Error, s.String()} {
			if strings.Contains(text, secret) || strings.Contains(text, dsn) {
				t.Errorf("names the secret: %s", text)
			}
		}
		if s.Health().OK || s.Health().Error == "" {
			t.Errorf("health after a refused connection: %+v", s.Health())
		}
		t.Logf("reported: %s", s.Health().Error)
	}
}

// TestHealth: a database that refuses the role is reported with its
// error, and OK again once it lets the role back in.
func TestHealth(t *testing.T) {
	db := testkit.Postgres(t)
	s := open(t, db.DSN)
	ctx := t.Context()
	if err := s.Store(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if h := s.Health(); !h.OK || h.LastOK.IsZero() {
		t.Fatalf("health %+v", h)
	}
	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" NOLOGIN")
	testkit.SuperSQL(t, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = '"+db.Role+"'")
	if _, err := s.Load(ctx, "k"); err == nil {
		t.Fatal("Load worked with the role refused")
	}
	// One failure may be the dead connection; the retry reconnects.
	err := s.Ping(ctx)
	h := s.Health()
	if err == nil || h.OK || !strings.Contains(h.Error, "not permitted to log in") {
		t.Fatalf("after NOLOGIN: err %v, health %+v", err, h)
	}
	t.Logf("reported: %s", h.Error)
	testkit.SuperSQL(t, "ALTER ROLE "+db.Role+" LOGIN")
	if v, err := s.Load(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("after LOGIN: %q %v", v, err)
	}
	if h2 := s.Health(); !h2.OK || !h2.Since.After(h.Since) {
		t.Errorf("health %+v after %+v", h2, h)
	}
}
