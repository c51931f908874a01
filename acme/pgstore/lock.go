package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// held is a lock this process holds: its row's owner and the goroutine
// that keeps the row from expiring.
type held struct {
	owner string
	done  chan struct{}
	quit  chan struct{}
}

func (h *held) stop() {
	close(h.quit)
	<-h.done
}

func token() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Lock takes the named lock, waiting while another holder (any process,
// any host) has it and it has not expired. Times are the database's, so
// the hosts' clocks do not matter.
func (s *Store) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for lock %q: %w", name, ctx.Err())
		case <-time.After(s.poll):
		}
	}
}

// TryLock takes the named lock if it is free or expired.
func (s *Store) TryLock(ctx context.Context, name string) (bool, error) {
	owner := s.owner + " " + token()
	var got bool
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `INSERT INTO keter_certmagic_locks (name, owner, expires)
			VALUES ($1, $2, now() + make_interval(secs => $3))
			ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires = excluded.expires
			WHERE keter_certmagic_locks.expires < now()`, name, owner, s.ttl.Seconds())
		got = err == nil && tag.RowsAffected() == 1
		return err
	})
	if err != nil {
		return false, fmt.Errorf("taking lock %q: %w", name, err)
	}
	if !got {
		return false, nil
	}
	h := &held{owner: owner, done: make(chan struct{}), quit: make(chan struct{})}
	s.lmu.Lock()
	s.held[name] = h
	s.lmu.Unlock()
	go s.keep(name, h)
	return true, nil
}

// keep pushes the lock's expiry forward until Unlock. A database that
// cannot be reached lets the lock expire: certmagic tolerates that.
func (s *Store) keep(name string, h *held) {
	defer close(h.done)
	t := time.NewTicker(s.ttl / 4)
	defer t.Stop()
	for {
		select {
		case <-h.quit:
			return
		case <-t.C:
		}
		var still bool
		err := s.do(context.Background(), func(ctx context.Context, c *pgx.Conn) error {
			tag, err := c.Exec(ctx, `UPDATE keter_certmagic_locks SET expires = now() + make_interval(secs => $3)
				WHERE name = $1 AND owner = $2`, name, h.owner, s.ttl.Seconds())
			still = tag.RowsAffected() == 1
			return err
		})
		switch {
		case err != nil:
			s.log.Warn("keeping a certificate storage lock", "lock", name, "err", err)
		case !still:
			s.log.Warn("a certificate storage lock expired while held (the database was unreachable for too long?)", "lock", name)
			return
		}
	}
}

// Unlock releases the named lock this process holds.
func (s *Store) Unlock(ctx context.Context, name string) error {
	s.lmu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.lmu.Unlock()
	if h == nil {
		return fmt.Errorf("unlocking %q: not held by this process", name)
	}
	h.stop()
	err := s.do(ctx, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "DELETE FROM keter_certmagic_locks WHERE name = $1 AND owner = $2", name, h.owner)
		return err
	})
	if err != nil {
		return fmt.Errorf("unlocking %q (it expires by itself): %w", name, err)
	}
	return nil
}
