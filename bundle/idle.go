package bundle

import "time"

// MaxIdleStop bounds idle-stop: a month without a request is as good as
// never sleeping.
const MaxIdleStop = 30 * 24 * time.Hour

// IdleOff is a webapp's IdleStop when its bundle says `idle-stop: off`:
// it never sleeps, whatever the host's default.
const IdleOff time.Duration = -1

// parseIdle reads a webapp stanza's `idle-stop` (a Go duration, or off)
// and `socket-activation` (ours, see docs/idle.md).
func parseIdle(o *obj, a *WebApp) {
	if n := o.get("idle-stop"); n != nil && n.Value == "off" {
		a.IdleStop = IdleOff
	} else if d, ok := o.duration("idle-stop", MaxIdleStop); ok {
		a.IdleStop = d
	}
	a.SocketActivation = o.boolean("socket-activation", false)
}

// Sleeps is how long the stanza may go without a request before its units
// stop: its own idle-stop, else the host's default (0: it never sleeps).
func (w *WebApp) Sleeps(hostDefault time.Duration) time.Duration {
	switch {
	case w.IdleStop == IdleOff:
		return 0
	case w.IdleStop > 0:
		return w.IdleStop
	}
	return max(hostDefault, 0)
}
