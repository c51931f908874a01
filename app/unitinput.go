package app

import (
	"github.com/keter-systemd/keter/bundle"
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
