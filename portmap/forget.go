package portmap

import (
	"fmt"
	"slices"
)

// ForgetFinished deletes the conntrack entries of finished connections
// the map sent from any of fronts to port (an old version), at a switch,
// in one pass over the kernel's table: a reset
// entry lives on for 10 s, and a new connection nginx opened from the
// same local port meanwhile would take its translation to the old version
// instead of the map's. Open connections are left alone: keter never
// closes a connection nginx may be reading or writing on; nginx retires
// its kept connections itself (keepalive_time, keepalive_timeout). It
// returns how many it deleted.
func (m *Map) ForgetFinished(port int, fronts ...int) (int, error) {
	n, err := forgetWhere(port, func(e translation) bool { return e.finished() && slices.Contains(fronts, e.to) })
	if err != nil {
		return n, fmt.Errorf("forgetting finished connections to port %d: %w", port, err)
	}
	return n, nil
}
