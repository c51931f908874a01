package portmap

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/sockdiag"
)

// CloseIdle closes the idle connections nginx keeps open to front that the
// map had sent to port (an old version): after a switch they would carry
// new requests to the old version until nginx retires them. It is closed
// on nginx's side, which drops it from its cache (or, had it picked it in
// that instant, retries an idempotent request on a new connection). Busy
// connections finish; nginx's keepalive_time bounds how long they stay.
// It returns how many it closed.
//
// A connection is idle when nothing is unread or unacknowledged and the
// last data on it came from the old version: tcp_info's times have the
// kernel's tick (4 ms at HZ=250), so when request and answer fall in one
// tick, the counts of data segments decide (on loopback a request or an
// answer of up to 64 KB is one segment).
func (m *Map) CloseIdle(front, port int) (int, error) {
	socks, err := sockdiag.Dump(unix.AF_INET, 1<<sockdiag.StateEstablished)
	if err != nil {
		return 0, err
	}
	lo := netip.AddrFrom4([4]byte{127, 0, 0, 1})
	// The old version's ends name nginx's ports: nginx's own ends only
	// show the front port they dialled.
	nginxEnds := map[netip.AddrPort]bool{}
	for _, s := range socks {
		if s.Local.Port() == uint16(port) && s.Local.Addr() == lo {
			nginxEnds[s.Remote] = true
		}
	}
	closed := 0
	var errs []error
	for _, s := range socks {
		if !nginxEnds[s.Local] || s.Remote != netip.AddrPortFrom(lo, uint16(front)) {
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
	case s.SinceRecv != s.SinceSent:
		return s.SinceRecv < s.SinceSent
	}
	return s.DataSegsIn >= s.DataSegsOut
}
