package dbus

import (
	"strings"

	"github.com/keter-systemd/keter/unitgen"
)

// owned gives s strings of its own. godbus decodes every string of a
// message as a slice of a shared 4 KiB buffer, so a unit state kept for
// as long as the unit lives (by the subscription, keter's core, the
// unit cache, the usage books) would keep a buffer per unit alive: about
// 3.5 MB of keter's heap with 100 apps.
func owned(s unitgen.Status) unitgen.Status {
	s.Name, s.ActiveState, s.SubState, s.Result = strings.Clone(s.Name), strings.Clone(s.ActiveState), strings.Clone(s.SubState), strings.Clone(s.Result)
	s.Meta.App, s.Meta.Version, s.Meta.Stanza, s.Meta.Job = strings.Clone(s.Meta.App), strings.Clone(s.Meta.Version), strings.Clone(s.Meta.Stanza), strings.Clone(s.Meta.Job)
	return s
}
