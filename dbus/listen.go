package dbus

import (
	"context"
	"errors"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"golang.org/x/sys/unix"

	"github.com/keter-systemd/keter/internal/cgroup"
	"github.com/keter-systemd/keter/internal/sockdiag"
)

// ErrNotListening means nothing listens on the port; ErrForeignListener
// that something outside the unit does.
var (
	ErrNotListening    = errors.New("nothing listens on the port")
	ErrForeignListener = errors.New("the port is held by a program outside the unit")
)

// Listens checks that a TCP socket listening on port belongs to unit (is
// in its cgroup): an answer on an app's port proves nothing if another
// program took the port before the app could bind it.
func (c *Client) Listens(ctx context.Context, unit string, port int) error {
	var path string
	err := c.do(ctx, func(conn *sddbus.Conn) error {
		p, err := conn.GetUnitTypePropertyContext(ctx, unit, "Service", "ControlGroup")
		if err != nil {
			return err
		}
		path, _ = p.Value.Value().(string)
		return nil
	})
	if err != nil {
		return fmt.Errorf("reading the cgroup of unit %s: %w", unit, err)
	}
	if path == "" {
		return fmt.Errorf("unit %s has no cgroup (not running): %w", unit, ErrNotListening)
	}
	id, err := cgroup.ID(path)
	if err != nil {
		return fmt.Errorf("reading the cgroup of unit %s: %w", unit, err)
	}
	seen := false
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		socks, err := sockdiag.DumpPort(family, 1<<sockdiag.StateListen, uint16(port))
		if err != nil {
			return err
		}
		for _, s := range socks {
			if int(s.Local.Port()) != port {
				continue
			}
			if s.CgroupID == 0 || s.CgroupID == id {
				return nil // ours (or a kernel that cannot tell)
			}
			seen = true
		}
	}
	if seen {
		return fmt.Errorf("port %d: %w %s", port, ErrForeignListener, unit)
	}
	return fmt.Errorf("port %d: %w", port, ErrNotListening)
}
