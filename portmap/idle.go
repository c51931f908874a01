package portmap

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/sockdiag"
	"github.com/mdlayher/netlink"
)

// CloseIdle closes the idle connections nginx keeps open to front that the
// map had sent to port (an old version): after a switch they would carry
// new requests to the old version until nginx retires them. It is closed
// on nginx's side, which drops it from its cache (or, had it picked it in
// that instant, retries an idempotent request on a new connection). Busy
// connections finish; nginx's keepalive_time bounds how long they stay.
// It also forgets the translations of front's finished connections to
// port (see Forget). It returns how many it closed.
//
// A connection is idle when it carried a request, nothing is unread or
// unacknowledged and the last data on it came from the old version:
// tcp_info's times have the kernel's tick (4 ms at HZ=250), so when
// request and answer fall in one tick, the counts of data segments decide
// (on loopback a request or an answer of up to 64 KB is one segment).
func (m *Map) CloseIdle(front, port int) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	entries, err := translations(c, port)
	if err != nil {
		return 0, err
	}
	// nginx's ends of connections the map sent from front to port: by
	// their local port, as conntrack saw it before any translation.
	// Finished ones go: when port closed them, a new connection from the
	// same local port would take their translation to port again.
	ends := map[int]bool{}
	var errs []error
	for _, e := range entries {
		switch {
		case e.to != front:
		case e.state == tcpEstablished:
			ends[e.from] = true
		case e.finished():
			if err := forget(c, e); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if len(ends) == 0 {
		return 0, errors.Join(errs...)
	}
	socks, err := sockdiag.Dump(unix.AF_INET, 1<<sockdiag.StateEstablished)
	if err != nil {
		return 0, err
	}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	closed := 0
	for _, s := range socks {
		if s.Local.Addr() != lo || !ends[int(s.Local.Port())] || s.Remote != netip.AddrPortFrom(lo, uint16(front)) {
			continue
		}
		if !idle(s) {
			continue
		}
		if err := sockdiag.Destroy(s); err != nil {
			errs = append(errs, err)
			continue
		}
		closed++
	}
	if err := errors.Join(errs...); err != nil {
		return closed, fmt.Errorf("closing idle connections to port %d: %w", port, err)
	}
	return closed, nil
}

func idle(s sockdiag.Socket) bool {
	switch {
	case s.RecvQ != 0 || s.SendQ != 0:
		return false
	case s.DataSegsOut == 0:
		// Only just connected: its first request is on its way to the
		// old version, which answers it (closing it would fail the
		// connect); once answered it is idle for the next pass.
		return false
	case s.SinceRecv != s.SinceSent:
		return s.SinceRecv < s.SinceSent
	}
	return s.DataSegsIn >= s.DataSegsOut
}
