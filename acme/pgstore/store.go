package pgstore

import (
	"context"
	"errors"
	"io/fs"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/jackc/pgx/v5"
)

var (
	_ certmagic.Storage   = (*Store)(nil)
	_ certmagic.TryLocker = (*Store)(nil)
)

// notExist is what certmagic tests for with errors.Is(err, fs.ErrNotExist).
func notExist(op, key string) error {
	return &fs.PathError{Op: op, Path: key, Err: fs.ErrNotExist}
}

// clean drops the slashes certmagic's keys never have at either end.
func clean(key string) string { return strings.Trim(key, "/") }

// under is the LIKE pattern of every key below dir ("" is the root).
func under(dir string) string {
	if dir == "" {
		return "%"
	}
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(dir) + "/%"
}

// Store puts value at key, replacing what was there.
func (s *Store) Store(ctx context.Context, key string, value []byte) error {
	key = clean(key)
	if value == nil {
		value = []byte{}
	}
	return s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO keter_certmagic (key, value, modified) VALUES ($1, $2, now())
			ON CONFLICT (key) DO UPDATE SET value = excluded.value, modified = excluded.modified`, key, value)
		return err
	})
}

// Load returns the value at key, or an error that is fs.ErrNotExist.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	key = clean(key)
	var value []byte
	found := true
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		err := c.QueryRow(ctx, "SELECT value FROM keter_certmagic WHERE key = $1", key).Scan(&value)
		if errors.Is(err, pgx.ErrNoRows) {
			found, err = false, nil
		}
		return err
	})
	switch {
	case err != nil:
		return nil, err
	case !found:
		return nil, notExist("load", key)
	}
	return value, nil
}

// Delete removes key and, as a directory, everything under it; a
// missing key is no error.
func (s *Store) Delete(ctx context.Context, key string) error {
	key = clean(key)
	return s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `DELETE FROM keter_certmagic WHERE key = $1 OR key LIKE $2`, key, under(key))
		return err
	})
}

// Exists reports key as a file or a directory; false when the database
// cannot say.
func (s *Store) Exists(ctx context.Context, key string) bool {
	key = clean(key)
	var ok bool
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		return c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM keter_certmagic WHERE key = $1 OR key LIKE $2)`,
			key, under(key)).Scan(&ok)
	})
	return err == nil && ok
}

// Stat describes key: a file with its size and time, or a directory
// (IsTerminal false) with the newest time below it.
func (s *Store) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = clean(key)
	info := certmagic.KeyInfo{Key: key}
	found := true
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		err := c.QueryRow(ctx, "SELECT length(value), modified FROM keter_certmagic WHERE key = $1", key).
			Scan(&info.Size, &info.Modified)
		if err == nil {
			info.IsTerminal = true
			return nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		var newest *time.Time
		if err := c.QueryRow(ctx, "SELECT max(modified) FROM keter_certmagic WHERE key LIKE $1", under(key)).
			Scan(&newest); err != nil {
			return err
		}
		if newest == nil {
			found = false
		} else {
			info.Modified = *newest
		}
		return nil
	})
	switch {
	case err != nil:
		return certmagic.KeyInfo{}, err
	case !found:
		return certmagic.KeyInfo{}, notExist("stat", key)
	}
	return info, nil
}

// List names what is in dir as FileStorage does: its files and folders,
// and with recursive every file and folder below it, as full keys,
// sorted. A dir with nothing below it is fs.ErrNotExist, unless it is a
// file.
func (s *Store) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = clean(dir)
	var keys []string
	isFile := false
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT key FROM keter_certmagic WHERE key LIKE $1 ORDER BY key", under(dir))
		if err != nil {
			return err
		}
		keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil || len(keys) > 0 {
			return err
		}
		return c.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM keter_certmagic WHERE key = $1)", dir).Scan(&isFile)
	})
	if err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		if isFile {
			return []string{}, nil
		}
		return nil, notExist("list", dir)
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	seen := map[string]bool{}
	var out []string
	for _, k := range keys {
		parts := strings.Split(strings.TrimPrefix(k, base), "/")
		n := 1
		if recursive {
			n = len(parts)
		}
		for i := 1; i <= n; i++ {
			name := base + strings.Join(parts[:i], "/")
			if !seen[name] {
				seen[name] = true
				out = append(out, name)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}
