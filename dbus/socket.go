package dbus

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/unitgen"
)

// StartSleeper starts a sleeping webapp instance's socket with its
// services (the app, and its proxy) as auxiliary units in one
// StartTransientUnit call: a transient socket cannot name a service that
// does not exist yet. The services do not start now: the socket starts
// them at its first connection. The caller must have written the app's
// Secrets and launcher first.
func (c *Client) StartSleeper(ctx context.Context, s unitgen.Sleeper) error {
	var aux []sddbus.PropertyCollection
	for _, u := range s.Units() {
		aux = append(aux, sddbus.PropertyCollection{Name: u.Name, Properties: u.Properties})
	}
	err := c.job(ctx, "start", s.Socket, func(conn *sddbus.Conn) (int, error) {
		return conn.StartTransientUnitAux(ctx, s.Socket, "fail", s.SocketProperties, aux, nil)
	})
	if err != nil {
		return fmt.Errorf("starting socket %s: %w", s.Socket, err)
	}
	names := []string{s.Socket}
	for _, u := range s.Units() {
		names = append(names, u.Name)
	}
	for _, n := range names {
		if _, err := repairFile(filepath.Join(c.transientDir(), n)); err != nil {
			slog.Warn("repairing transient unit file", "unit", n, "err", err)
		}
	}
	return nil
}
