package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Defaults for Options.
const (
	// LockTTL is how long a lock outlives a holder that stopped renewing it.
	LockTTL = 20 * time.Second
	// LockPoll is how often a waiting Lock asks again.
	LockPoll = time.Second
	// opTimeout bounds one operation when the caller's context does not.
	opTimeout = 15 * time.Second
	// connectTimeout bounds a connection attempt when the string sets none.
	connectTimeout = 10 * time.Second
)

// Options tune a Store; zero values take the defaults above.
type Options struct {
	LockTTL  time.Duration
	LockPoll time.Duration
	Log      *slog.Logger
}

// Store is the storage. One connection, used by one operation at a
// time: certmagic's traffic is a few small rows now and then.
type Store struct {
	cfg    *pgx.ConnConfig
	dsn    string // only to scrub it from errors
	target string // database, role and server: safe to show
	ttl    time.Duration
	poll   time.Duration
	owner  string // this process, as lock rows record it
	log    *slog.Logger

	mu     sync.Mutex // the connection
	conn   *pgx.Conn
	schema bool // tables checked on this store

	hmu    sync.Mutex
	health Health

	lmu  sync.Mutex
	held map[string]*held
}

// Health is what the store last saw of the database.
type Health struct {
	// OK: the last operation reached the database and succeeded.
	OK bool
	// Error is the last failure, redacted; "" while OK.
	Error string
	// Since is when OK last changed (or the first operation).
	Since time.Time
	// LastOK is the last successful operation; zero if none yet.
	LastOK time.Time
}

// New parses a libpq connection string (URL or keyword/value; passfile=,
// PGPASSFILE and ~/.pgpass are read as libpq reads them). It does not
// connect: keter must start, and serve the certificates it has, while
// the database is down.
func New(dsn string, o Options) (*Store, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New(redactParse(err, dsn))
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	if o.LockTTL <= 0 {
		o.LockTTL = LockTTL
	}
	if o.LockPoll <= 0 {
		o.LockPoll = LockPoll
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	s := &Store{
		cfg: cfg, dsn: dsn, target: describe(cfg),
		ttl: o.LockTTL, poll: o.LockPoll, log: o.Log,
		owner: fmt.Sprintf("%s pid %d %s", host, os.Getpid(), token()),
		held:  map[string]*held{},
	}
	return s, nil
}

// Validate reports whether dsn parses, with a redacted error.
func Validate(dsn string) error {
	if _, err := pgx.ParseConfig(dsn); err != nil {
		return errors.New(redactParse(err, dsn))
	}
	return nil
}

// String names the database without credentials (certmagic logs it).
func (s *Store) String() string { return "PostgreSQL " + s.target }

// Target names the database, role and server, without credentials.
func (s *Store) Target() string { return s.target }

// Health returns what the store last saw of the database.
func (s *Store) Health() Health {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.health
}

// Ping checks the database can be reached and the tables used.
func (s *Store) Ping(ctx context.Context) error {
	return s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SELECT 1 FROM keter_certmagic_locks LIMIT 1")
		return err
	})
}

// Close drops the connection; locks still held expire after LockTTL.
func (s *Store) Close() {
	s.lmu.Lock()
	for name, h := range s.held {
		h.stop()
		delete(s.held, name)
	}
	s.lmu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.conn != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		s.conn.Close(ctx)
		cancel()
		s.conn = nil
	}
}

// do runs f on the connection, connecting (and creating the tables)
// first if needed, and records the outcome in Health.
func (s *Store) do(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	octx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := s.run(octx, f)
	if err != nil && ctx.Err() != nil {
		return ctx.Err() // the caller gave up: says nothing of the database
	}
	if err != nil && (s.conn == nil || s.conn.IsClosed() || !isServerError(err)) {
		if s.conn != nil {
			s.conn.Close(context.Background())
		}
		s.conn = nil
	}
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
		s.schema = false // a table went away: make it again next time
	}
	s.record(err)
	if err != nil {
		return s.redact(err)
	}
	return nil
}

func (s *Store) run(ctx context.Context, f func(context.Context, *pgx.Conn) error) error {
	if s.conn == nil || s.conn.IsClosed() {
		c, err := pgx.ConnectConfig(ctx, s.cfg.Copy())
		if err != nil {
			return fmt.Errorf("connecting to %s: %w", s.target, err)
		}
		s.conn = c
	}
	if !s.schema {
		if err := makeSchema(ctx, s.conn); err != nil {
			return fmt.Errorf("creating the tables in %s: %w", s.target, err)
		}
		s.schema = true
	}
	return f(ctx, s.conn)
}

// makeSchema creates the tables unless they exist, under a transaction
// advisory lock so hosts starting together do not race on CREATE. A
// role without CREATE may use tables an operator made.
func makeSchema(ctx context.Context, c *pgx.Conn) error {
	tx, err := c.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	var have bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('keter_certmagic') IS NOT NULL
		AND to_regclass('keter_certmagic_locks') IS NOT NULL`).Scan(&have); err != nil {
		return err
	}
	if have {
		return nil
	}
	// 'keter' in ASCII: one lock number for every keter.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock(478560413042)"); err != nil {
		return err
	}
	for _, q := range []string{
		`CREATE TABLE IF NOT EXISTS keter_certmagic (
			key text COLLATE "C" PRIMARY KEY,
			value bytea NOT NULL,
			modified timestamptz NOT NULL DEFAULT now())`,
		`CREATE TABLE IF NOT EXISTS keter_certmagic_locks (
			name text PRIMARY KEY,
			owner text NOT NULL,
			expires timestamptz NOT NULL)`,
	} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (s *Store) record(err error) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	now := time.Now()
	ok := err == nil
	if ok != s.health.OK || s.health.Since.IsZero() {
		s.health.Since = now
		if ok {
			s.log.Info("certificate storage reachable", "storage", s.target)
		} else {
			s.log.Warn("certificate storage unreachable: hosts keep serving the certificates they have", "storage", s.target, "err", s.redact(err))
		}
	}
	s.health.OK = ok
	if ok {
		s.health.Error, s.health.LastOK = "", now
	} else {
		s.health.Error = s.redact(err).Error()
	}
}

// isServerError: the server answered (the connection is still good).
func isServerError(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) || errors.Is(err, pgx.ErrNoRows)
}

// redacted hides the connection string and password in an error's text;
// errors.Is and As still see the cause.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

func (s *Store) redact(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, secret := range []string{s.dsn, s.cfg.Password} {
		if secret != "" {
			msg = strings.ReplaceAll(msg, secret, "xxxxx")
		}
	}
	return &redacted{msg: msg, err: err}
}

// redactParse reports a connection string that does not parse without
// quoting it: pgx quotes it with its passwords masked only on a best
// effort basis.
func redactParse(err error, dsn string) string {
	msg := err.Error()
	if i := strings.Index(msg, "cannot parse `"); i >= 0 {
		if j := strings.LastIndex(msg, "`: "); j > i {
			msg = msg[:i] + "cannot parse the connection string" + msg[j+1:]
		} else {
			msg = msg[:i] + "cannot parse the connection string"
		}
	}
	if dsn != "" {
		msg = strings.ReplaceAll(msg, dsn, "xxxxx")
	}
	return "not a PostgreSQL connection string: " + msg
}

// describe names the database, role and server, without credentials.
func describe(c *pgx.ConnConfig) string {
	where := net.JoinHostPort(c.Host, strconv.Itoa(int(c.Port)))
	if strings.HasPrefix(c.Host, "/") {
		where = c.Host + "/.s.PGSQL." + strconv.Itoa(int(c.Port))
	}
	return fmt.Sprintf("database %s as %s on %s", c.Database, c.User, where)
}
