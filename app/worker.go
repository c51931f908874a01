package app

import (
	"context"
	"sync"
)

// request is what an app's worker should do next; a newer one replaces a
// queued one (latest wins).
type request struct {
	remove bool
	path   string
	done   chan error // optional: told the outcome
}

type worker struct {
	mu      sync.Mutex
	pending *request
	wake    chan struct{}
}

// superseded reports whether a newer request is waiting, so a slow deploy
// can give way to it.
func (w *worker) superseded() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending != nil
}

func (w *worker) take() *request {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.pending
	w.pending = nil
	return r
}

// enqueue hands a request to the app's worker, starting it if needed.
func (m *Manager) enqueue(ctx context.Context, name string, r request) {
	m.mu.Lock()
	w := m.workers[name]
	if w == nil {
		w = &worker{wake: make(chan struct{}, 1)}
		m.workers[name] = w
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.runWorker(ctx, name, w)
		}()
	}
	m.mu.Unlock()
	w.mu.Lock()
	if old := w.pending; old != nil && old.done != nil {
		old.done <- errSuperseded
	}
	w.pending = &r
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) runWorker(ctx context.Context, name string, w *worker) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for r := w.take(); r != nil; r = w.take() {
			var err error
			if r.remove {
				err = m.remove(ctx, name)
			} else {
				err = m.deploy(ctx, name, r.path, w)
			}
			if r.done != nil {
				r.done <- err
			}
		}
	}
}
