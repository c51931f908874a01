package unitgen

import (
	"errors"
	"fmt"

	sddbus "github.com/coreos/go-systemd/v22/dbus"

	"github.com/keter-systemd/keter/bundle"
)

// ReleaseStanza is the STANZA part of a release step's unit name:
// keter-app-APP-VERSION-release.service. Stanza names are a kind plus a
// number, so it cannot clash with one.
const ReleaseStanza = "release"

// Release turns a bundle's release step into a unit that runs once and
// ends: in.Stanza is the stanza it borrows from (the one
// bundle.AppConfig.ReleaseStanza names), and the step gets that stanza's
// user, sandbox, working directory, limits and environment (every layer
// Build applies) but no PORT or port-env-vars, and no restarts.
// Type=oneshot, so the start job ends when the process does; systemd stops
// it at rel.Timeout (Result "timeout"). A failed step stays loaded
// (CollectMode=inactive) until the caller has read how it ended and resets
// it.
func Release(in Input, rel *bundle.Release) (Unit, error) {
	if rel == nil {
		return Unit{}, errors.New("building release unit: no release step")
	}
	if rel.Timeout <= 0 {
		return Unit{}, fmt.Errorf("building release unit for %s: timeout %s is not positive", in.App, rel.Timeout)
	}
	in.Port, in.Instance, in.StopHook = 0, 0, nil
	u, err := build(in, rel)
	if err != nil {
		return Unit{}, err
	}
	u.Properties = setProps(u.Properties,
		sddbus.PropType("oneshot"),
		prop("RemainAfterExit", false),
		prop("CollectMode", "inactive"),
		prop("TimeoutStartUSec", usec(rel.Timeout)),
	)
	return u, nil
}

// setProps replaces properties of the same name in place, appending the
// ones not there yet.
func setProps(props []sddbus.Property, set ...sddbus.Property) []sddbus.Property {
	for _, s := range set {
		found := false
		for i := range props {
			if props[i].Name == s.Name {
				props[i], found = s, true
			}
		}
		if !found {
			props = append(props, s)
		}
	}
	return props
}
