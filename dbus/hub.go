package dbus

import (
	"sync"

	godbus "github.com/godbus/dbus/v5"
)

// hub hands each signal read off a link's connection to the job results
// and to every subscription. systemd sends every signal to every direct
// connection and godbus decodes each in full, so one connection for all
// decodes a signal once: keter had four (go-systemd's two, Subscribe's
// and SubscribeStates'), and with 1000 bundles dropped at once decoding
// systemd's messages was 7.4 s of keter's 64 s of CPU.
type hub struct {
	results *jobResults

	mu     sync.Mutex
	subs   map[*signalQueue]struct{}
	closed bool
}

func newHub() *hub {
	return &hub{results: newJobResults(), subs: map[*signalQueue]struct{}{}}
}

// run dispatches signals until sigs closes (the connection closed), then
// ends every subscription's queue. It never waits on a subscriber, so
// godbus never finds sigs full.
func (h *hub) run(sigs <-chan *godbus.Signal) {
	for sig := range sigs {
		h.results.take(sig)
		h.mu.Lock()
		for q := range h.subs {
			q.push(sig)
		}
		h.mu.Unlock()
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for q := range h.subs {
		q.close()
	}
	clear(h.subs)
}

// join returns a queue of the signals that come from now on, closed when
// the connection closes (at once if it has), and a func that leaves.
func (h *hub) join() (*signalQueue, func()) {
	q := newSignalQueue()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		q.close()
		return q, func() {}
	}
	h.subs[q] = struct{}{}
	return q, func() {
		h.mu.Lock()
		delete(h.subs, q)
		h.mu.Unlock()
	}
}
