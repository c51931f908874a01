package dbus

import (
	"context"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// Restart restarts a unit in place (same name, same properties: a
// transient unit keeps them) and waits until it is started again. An app
// unit's stop hook sees a restart job, not a stop, and leaves the port
// map alone.
func (c *Client) Restart(ctx context.Context, name string) error {
	err := c.job(ctx, "restart", name, func(conn *sddbus.Conn) (int, error) {
		return conn.RestartUnitContext(ctx, name, "replace", nil)
	})
	if err != nil {
		return fmt.Errorf("restarting unit %s: %w", name, err)
	}
	return nil
}
