package dbus

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"

	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

const (
	unitPathPrefix = "/org/freedesktop/systemd1/unit/"
	ifaceUnit      = "org.freedesktop.systemd1.Unit"
	ifaceService   = "org.freedesktop.systemd1.Service"
	propsChanged   = "org.freedesktop.DBus.Properties.PropertiesChanged"
	unitRemoved    = "org.freedesktop.systemd1.Manager.UnitRemoved"
	reloading      = "org.freedesktop.systemd1.Manager.Reloading"
)

// Subscribe follows the units whose name starts with prefix: it sends a
// Status each time one's ActiveState, SubState, Result, MainPID or
// NRestarts changes, beginning with the current state of every such unit,
// and a last one with ActiveState "gone" when systemd unloads it.
// After a dropped connection it redials and sends every unit's state again.
// The channel closes when ctx ends or systemd cannot be reached again.
// Read it promptly: systemd's signals are dropped while its buffer is full.
func (c *Client) Subscribe(ctx context.Context, prefix string) (<-chan unitgen.Status, error) {
	return c.subscribe(ctx, prefix, false)
}

// SubscribeStates is Subscribe without reading a unit back after each
// signal: the states as the signals tell them (systemd's brief "failed"
// before "auto-restart" on a crash included), with no figures. For a
// reader that reads changed units itself, a few at a time (unitcache):
// reading back costs systemd two GetAll calls per signal.
func (c *Client) SubscribeStates(ctx context.Context, prefix string) (<-chan unitgen.Status, error) {
	return c.subscribe(ctx, prefix, true)
}

func (c *Client) subscribe(ctx context.Context, prefix string, raw bool) (<-chan unitgen.Status, error) {
	l, err := c.current(ctx)
	if err != nil {
		return nil, fmt.Errorf("subscribing to systemd: %w", err)
	}
	q, leave := l.signals.join()
	out := make(chan unitgen.Status, 256)
	go func() {
		defer close(out)
		w := watcher{c: c, prefix: prefix, raw: raw, out: out, known: map[string]unitgen.Status{}, sent: map[string]unitgen.Status{}}
		for {
			// Joined before the snapshot: no change falls between the two.
			w.snapshot(ctx)
			w.follow(ctx, q)
			leave()
			if ctx.Err() != nil {
				return
			}
			slog.Debug("systemd subscription dropped; redialling")
			if l, err = c.redial(ctx, l); err != nil {
				slog.Warn("systemd subscription ended", "err", err)
				return
			}
			q, leave = l.signals.join()
		}
	}()
	return out, nil
}

type watcher struct {
	c      *Client
	prefix string
	raw    bool // no read back after a signal (SubscribeStates)
	out    chan<- unitgen.Status
	known  map[string]unitgen.Status // merged from signals
	sent   map[string]unitgen.Status // last state sent per unit
	// reloading is set between systemd's Reloading(true) and (false): a
	// daemon-reload removes every unit and loads it again, so a removal
	// then means nothing until the reload ends and the units are listed.
	reloading bool
}

func (w *watcher) send(ctx context.Context, s unitgen.Status) {
	select {
	case w.out <- s:
	case <-ctx.Done():
	}
}

// list reads every matching unit: with a raw watcher only their states
// (one call, however many units), as the signals that follow will tell.
func (w *watcher) list(ctx context.Context) ([]unitgen.Status, error) {
	if w.raw {
		return w.c.states(ctx, w.prefix)
	}
	return w.c.List(ctx, w.prefix)
}

// snapshot sends the current state of every matching unit.
func (w *watcher) snapshot(ctx context.Context) {
	list, err := w.list(ctx)
	if err != nil {
		slog.Warn("listing units for subscription", "err", err)
		return
	}
	for _, s := range list {
		w.known[s.Name] = s
		w.sent[s.Name] = s
		w.send(ctx, s)
	}
}

// resync lists the units after a daemon-reload and sends what changed:
// a unit that did not come back is gone.
func (w *watcher) resync(ctx context.Context) {
	list, err := w.list(ctx)
	if err != nil {
		slog.Warn("listing units after a systemd reload", "err", err)
		return
	}
	now := map[string]bool{}
	for _, s := range list {
		now[s.Name] = true
		w.known[s.Name] = s
		if last, seen := w.sent[s.Name]; !seen || last != s {
			w.sent[s.Name] = s
			w.send(ctx, s)
		}
	}
	for name, last := range w.known {
		if !now[name] {
			delete(w.known, name)
			delete(w.sent, name)
			last.ActiveState, last.SubState = "gone", ""
			w.send(ctx, last)
		}
	}
}

// follow applies signals until ctx ends or the connection drops. The hub
// queues signals as they come (while a channel is full godbus starts a
// goroutine per signal, and the runtime keeps a goroutine's memory for
// good: a thousand units starting at once did that by the ten thousand)
// and follow handles them in batches, where a unit that changed several
// times is read back once.
func (w *watcher) follow(ctx context.Context, q *signalQueue) {
	for {
		batch, ok := q.take(ctx)
		if !ok {
			return
		}
		w.handle(ctx, batch)
	}
}

// handle applies a batch of signals in order; units whose Unit
// properties changed are read back (and sent) once, at the end or before
// a reload.
func (w *watcher) handle(ctx context.Context, batch []*godbus.Signal) {
	var pending []string
	want := map[string]bool{}
	flush := func() {
		for _, n := range pending {
			if !want[n] {
				continue // removed meanwhile
			}
			if s, ok := w.refresh(ctx, w.known[n]); ok {
				w.send(ctx, s)
			}
		}
		pending = pending[:0]
		clear(want)
	}
	for _, sig := range batch {
		name, isUnit := unitName(sig.Path)
		switch {
		case sig.Name == reloading && len(sig.Body) > 0:
			flush()
			active, _ := sig.Body[0].(bool)
			w.reloading = active
			if !active {
				w.resync(ctx)
			}
		case sig.Name == unitRemoved && w.reloading:
		case sig.Name == unitRemoved && len(sig.Body) > 0:
			if id, _ := sig.Body[0].(string); id != "" {
				if want[id] {
					// Its last state (often "failed") goes out before "gone".
					flush()
				}
				last, seen := w.known[id]
				delete(w.known, id)
				delete(w.sent, id)
				if seen && strings.HasPrefix(id, w.prefix) {
					last.ActiveState, last.SubState = "gone", ""
					w.send(ctx, last)
				}
			}
		case sig.Name == propsChanged && isUnit && strings.HasPrefix(name, w.prefix) && len(sig.Body) >= 2:
			iface, _ := sig.Body[0].(string)
			changed, _ := sig.Body[1].(map[string]godbus.Variant)
			_, seen := w.known[name]
			s, ok := w.apply(name, iface, changed)
			switch {
			case !ok || want[name]: // the read back sends it
			case iface == ifaceUnit && !w.raw && (!seen || !upward(s.ActiveState)):
				// Read back a unit seen first (its metadata is in its
				// Description) and one that seems to stop or fail: a crash
				// passes through "failed" and "inactive" on its way to an
				// automatic restart (see refresh). A unit starting is as
				// its signals say.
				want[name] = true
				pending = append(pending, name)
			default:
				w.send(ctx, s)
			}
		}
	}
	flush()
}

// upward states are those a unit passes through only while it starts or
// runs, never on the way to a stop.
func upward(state string) bool {
	return state == "active" || state == "activating" || state == "reloading"
}

// signalQueue holds the signals the hub gave a subscription until follow
// takes them; it grows as needed.
type signalQueue struct {
	mu     sync.Mutex
	sigs   []*godbus.Signal
	closed bool
	ready  chan struct{} // a token when sigs is not empty or closed
}

func newSignalQueue() *signalQueue {
	return &signalQueue{ready: make(chan struct{}, 1)}
}

func (q *signalQueue) push(sig *godbus.Signal) {
	q.mu.Lock()
	q.sigs = append(q.sigs, sig)
	q.mu.Unlock()
	q.wake()
}

// close ends the queue once what it holds is taken.
func (q *signalQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.wake()
}

func (q *signalQueue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// take waits for signals and returns all that are queued; false once the
// queue is closed and empty, or ctx ended.
func (q *signalQueue) take(ctx context.Context) ([]*godbus.Signal, bool) {
	for {
		q.mu.Lock()
		batch, closed := q.sigs, q.closed
		q.sigs = nil
		q.mu.Unlock()
		if len(batch) > 0 {
			return batch, true
		}
		if closed {
			return nil, false
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-q.ready:
		}
	}
}

// apply merges changed properties into the unit's last known status and
// reports whether anything the caller sees changed.
func (w *watcher) apply(name, iface string, changed map[string]godbus.Variant) (unitgen.Status, bool) {
	s, seen := w.known[name]
	if !seen {
		s = unitgen.Status{Name: name}
		s.Meta, _ = unitgen.ParseUnitName(name)
	}
	before := s
	str := func(k string, dst *string) {
		if v, ok := changed[k]; ok {
			if x, ok := v.Value().(string); ok {
				*dst = x
			}
		}
	}
	u32 := func(k string, dst *uint32) {
		if v, ok := changed[k]; ok {
			if x, ok := v.Value().(uint32); ok {
				*dst = x
			}
		}
	}
	switch iface {
	case ifaceUnit:
		str("ActiveState", &s.ActiveState)
		str("SubState", &s.SubState)
		if d, ok := changed["Description"]; ok {
			if m, ok := unitgen.ParseMeta(fmt.Sprint(d.Value())); ok {
				s.Meta = m
			}
		}
	case ifaceService:
		str("Result", &s.Result)
		u32("MainPID", &s.MainPID)
		u32("NRestarts", &s.NRestarts)
	default:
		return s, false
	}
	s = owned(s)
	w.known[name] = s
	return s, s != before || !seen
}

// refresh replaces a state from a signal with systemd's current one and
// reports whether it differs from the last one sent. systemd 252 passes
// through "failed" on every crash before "auto-restart"; reading the state
// back hides that blip, so "failed" means the unit gave up. A unit that is
// already collected keeps the signal's state, its last.
//
// It reads the unit with Health: a GetAll of the Unit and Service
// interfaces made systemd serialise some 250 properties (dependency
// lists, exec commands) for these six, several times per deploy.
func (w *watcher) refresh(ctx context.Context, s unitgen.Status) (unitgen.Status, bool) {
	last, seen := w.sent[s.Name]
	cur, found, err := w.c.Health(ctx, s.Name)
	if err == nil && found {
		s.ActiveState, s.SubState, s.Meta = cur.ActiveState, cur.SubState, cur.Meta
		s.NRestarts, s.MainPID, s.Result = cur.NRestarts, cur.MainPID, cur.Result
		s = owned(s)
		w.known[s.Name] = s
	}
	if seen && last == s {
		return s, false
	}
	w.sent[s.Name] = s
	return s, true
}

// unitName decodes systemd's object path for a unit (bus_label_escape:
// every byte outside [A-Za-z0-9] is _XX).
func unitName(p godbus.ObjectPath) (string, bool) {
	label, ok := strings.CutPrefix(string(p), unitPathPrefix)
	if !ok || label == "" || strings.Contains(label, "/") {
		return "", false
	}
	var b strings.Builder
	for i := 0; i < len(label); i++ {
		if label[i] == '_' && i+2 < len(label) {
			if v, err := strconv.ParseUint(label[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		b.WriteByte(label[i])
	}
	return b.String(), true
}
