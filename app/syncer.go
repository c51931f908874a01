package app

import (
	"context"
	"errors"
	"sync"
)

// syncer coalesces proxy updates: callers that ask while an Apply runs are
// all served by the next one, which sees every change made before they
// asked. 100 bundles dropped at once cost a few reloads, not 100.
type syncer struct {
	proxy    Proxy
	snapshot func() []Live

	mu      sync.Mutex
	waiters []chan error
	kick    chan struct{}
	stopped chan struct{} // closed when Run returns
}

// errStopped: keter is shutting down and applies nothing more.
var errStopped = errors.New("nginx updates stopped: keter is shutting down")

func newSyncer(p Proxy, snapshot func() []Live) *syncer {
	return &syncer{proxy: p, snapshot: snapshot, kick: make(chan struct{}, 1), stopped: make(chan struct{})}
}

// Sync returns once a proxy apply that started after the call is done.
func (s *syncer) Sync(ctx context.Context) error {
	ch := make(chan error, 1)
	s.mu.Lock()
	s.waiters = append(s.waiters, ch)
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.stopped:
		return errStopped
	}
}

// Run applies until ctx ends.
func (s *syncer) Run(ctx context.Context) {
	defer close(s.stopped)
	for {
		select {
		case <-ctx.Done():
			s.fail(ctx.Err())
			return
		case <-s.kick:
		}
		s.mu.Lock()
		ws := s.waiters
		s.waiters = nil
		s.mu.Unlock()
		if len(ws) == 0 {
			continue
		}
		err := s.proxy.Apply(ctx, s.snapshot())
		for _, w := range ws {
			w <- err
		}
	}
}

func (s *syncer) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.waiters {
		w <- err
	}
	s.waiters = nil
}
