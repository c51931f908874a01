package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// request is what an app's worker should do next; a newer one replaces a
// queued one (latest wins), except that a restart is folded into a
// queued deploy rather than lost (and the other way round).
type request struct {
	remove bool
	path   string
	// restart replaces the live version with its own bundle (keter
	// restart, keter env set). With a path it runs after that deploy,
	// only if the deploy left the live version in place (an unchanged
	// bundle): a version that went live read the operator env as it is.
	restart bool
	// replace makes the restart a replacement by new units even where
	// one in place would do (keter env set: every unit gets the new env
	// at once).
	replace bool
	done    []chan error // each told the outcome
}

// plain reports a restart and nothing else.
func (r *request) plain() bool { return r.restart && r.path == "" && !r.remove }

// worker runs an app's requests one at a time in a goroutine that lives
// only while it has some: a thousand idle apps hold no thousand parked
// goroutines and their stacks.
type worker struct {
	mu      sync.Mutex
	pending *request
	running bool // a goroutine is taking pending
	// busy is held while a request runs, and by an operator step that
	// must not interleave with one (canary promote, abort): a deploy decides
	// canary or live, changed or not, from what it sees as it begins.
	busy chan struct{}
}

// hold waits until no request of the app runs and keeps the next from
// starting until release is called; false when ctx ends first.
func (w *worker) hold(ctx context.Context) bool {
	select {
	case w.busy <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (w *worker) release() { <-w.busy }

// superseded reports whether a newer bundle (or a removal) is waiting,
// so a slow deploy can give way to it. A waiting restart does not cut a
// deploy short: it follows it.
func (w *worker) superseded() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pending != nil && !w.pending.plain()
}

// take is the next request; with none the worker's goroutine must end.
func (w *worker) take() *request {
	w.mu.Lock()
	defer w.mu.Unlock()
	r := w.pending
	w.pending = nil
	if r == nil {
		w.running = false
	}
	return r
}

// fold hands a restart that a newer bundle cut short on to the request
// now waiting, so it still happens (or the deploy makes it moot); false
// when there is none to take it.
func (w *worker) fold(r *request) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p := w.pending; p != nil && !p.remove {
		p.replace = p.replace || r.replace
		p.restart = true
		p.done = append(p.done, r.done...)
		return true
	}
	return false
}

// enqueue hands a request to the app's worker, starting it if needed.
func (m *Manager) enqueue(ctx context.Context, name string, r request) {
	w := m.workerOf(name)
	m.mu.Lock()
	if m.workCtx != nil {
		ctx = m.workCtx
	}
	m.mu.Unlock()
	w.mu.Lock()
	if old := w.pending; old != nil {
		if !old.remove && !r.remove {
			if r.path == "" {
				r.path = old.path
			}
			r.restart = r.restart || old.restart
			r.replace = r.replace || old.replace
			r.done = append(old.done, r.done...)
		} else {
			for _, d := range old.done {
				d <- errSuperseded
			}
		}
	}
	w.pending = &r
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.runWorker(ctx, name, w)
		}()
	}
}

// workerOf is name's worker, made on first use.
func (m *Manager) workerOf(name string) *worker {
	m.mu.Lock()
	defer m.mu.Unlock()
	w := m.workers[name]
	if w == nil {
		w = &worker{busy: make(chan struct{}, 1)}
		m.workers[name] = w
	}
	return w
}

// holdApp waits until no request of name runs and keeps the next from
// starting until release is called.
func (m *Manager) holdApp(ctx context.Context, name string) (release func(), err error) {
	w := m.workerOf(name)
	if !w.hold(ctx) {
		return nil, fmt.Errorf("waiting for the deploy of %s that is running: %w", name, ctx.Err())
	}
	return w.release, nil
}

func (m *Manager) runWorker(ctx context.Context, name string, w *worker) {
	for {
		if ctx.Err() != nil || !w.hold(ctx) {
			w.mu.Lock()
			w.running = false
			w.mu.Unlock()
			return
		}
		r := w.take()
		if r == nil {
			w.release()
			return
		}
		m.runRequest(ctx, name, w, r)
		w.release()
	}
}

// runRequest runs one request and tells its waiters the outcome.
func (m *Manager) runRequest(ctx context.Context, name string, w *worker, r *request) {
	var err error
	if r.remove {
		err = m.remove(ctx, name)
	} else {
		before := m.liveVersion(name)
		if r.path != "" {
			err = m.deploy(ctx, name, r.path, w)
		}
		if r.restart && ctx.Err() == nil {
			switch {
			case errors.Is(err, errSuperseded):
			case err != nil:
				err = fmt.Errorf("a newer bundle was deployed first and failed, so nothing was restarted: %w", err)
			case r.path != "" && m.liveVersion(name) != before:
				// The new version is the replacement.
			default:
				err = m.restart(ctx, name, w, r.replace)
			}
			if errors.Is(err, errSuperseded) && w.fold(r) {
				return // the request now waiting tells them
			}
		}
	}
	for _, d := range r.done {
		d <- err
	}
}
