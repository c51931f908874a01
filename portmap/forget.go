package portmap

import (
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ForgetFinished deletes the conntrack entries of finished connections
// the map sent from front to port (an old version), at a switch: a reset
// entry lives on for 10 s, and a new connection nginx opened from the
// same local port meanwhile would take its translation to the old version
// instead of the map's. Open connections are left alone: keter never
// closes a connection nginx may be reading or writing on; nginx retires
// its kept connections itself (keepalive_time, keepalive_timeout). It
// returns how many it deleted.
func (m *Map) ForgetFinished(front, port int) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("conntrack: %w", err)
	}
	defer c.Close()
	entries, err := translations(c, port)
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, e := range entries {
		if e.to != front || !e.finished() {
			continue
		}
		if err := forget(c, e); err != nil {
			errs = append(errs, err)
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("forgetting finished connections to port %d: %w", port, err)
	}
	return n, nil
}
