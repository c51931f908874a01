package app

import (
	"fmt"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/internal/atomicfile"
	"github.com/keter-systemd/keter/unitgen"
)

// unitInput is what every unit of stanza i of v is built from: the
// version's own units and one-off commands (keter exec) alike, so both
// get the same environment layers.
// operator is the app's operator layer (OperatorEnv).
func (m *Manager) unitInput(v *version, i int, s bundle.Stanza, pluginEnv, operator map[string]string) unitgen.Input {
	return unitgen.Input{
		App: v.app, Version: v.id, Index: i, Stanza: s, Dir: v.dir,
		Global: m.cfg, PluginEnv: pluginEnv, LookupEnv: m.lookup, EnvDir: m.envDir(), Operator: operator,
	}
}

// writeUnitFiles writes what u reads when it starts: its root-only
// environment file and its launcher script, when it has them.
func writeUnitFiles(u unitgen.Unit) error {
	if u.EnvFile != "" {
		if err := atomicfile.Write(u.EnvFile, u.Secrets, 0o600); err != nil {
			return fmt.Errorf("writing environment of %s: %w", u.Name, err)
		}
	}
	if u.Launcher != "" {
		if err := atomicfile.Write(u.Launcher, u.LauncherScript, 0o644); err != nil {
			return fmt.Errorf("writing launcher of %s: %w", u.Name, err)
		}
	}
	return nil
}

// writeUnitFiles is writeUnitFiles for a unit of v, whose environment
// file is recorded first, so that stopping v deletes it whatever fails.
func (v *version) writeUnitFiles(u unitgen.Unit) error {
	if u.EnvFile != "" {
		v.envFiles = append(v.envFiles, u.EnvFile)
	}
	return writeUnitFiles(u)
}
