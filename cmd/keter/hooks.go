package main

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"

	"github.com/keter-systemd/keter/config"
	"github.com/keter-systemd/keter/dbus"
	"github.com/keter-systemd/keter/internal/atomicfile"
	"github.com/keter-systemd/keter/portmap"
	"github.com/keter-systemd/keter/unitgen"
)

// installHooks writes the scripts units run by path into the hooks folder,
// before any unit that runs them starts; units of an older keter find the
// current version.
func installHooks(cfg *config.Config) error {
	dir := cfg.Hooks()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("making the hooks folder: %w", err)
	}
	hooks := portmap.Hooks()
	maps.Copy(hooks, map[string]string{unitgen.OwnFolderFile: unitgen.OwnFolderScript, unitgen.WaitPortFile: unitgen.WaitPortScript})
	for name, body := range hooks {
		if err := atomicfile.Write(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			return fmt.Errorf("writing hook %s: %w", name, err)
		}
	}
	return nil
}

// repairUnits gives units started before this keter the commands systemd
// 252 drops from transient units at a daemon-reload (see
// dbus.RepairTransient).
func repairUnits(ctx context.Context, bus *dbus.Client, nginxUnit string, log *slog.Logger) {
	n, err := bus.RepairTransient(ctx, unitgen.Prefix, nginxUnit)
	if err != nil {
		log.Warn("repairing unit files", "err", err)
	}
	if n > 0 {
		log.Info("repaired unit files systemd would misread at its next reload", "units", n)
	}
}
