package status

import (
	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/unitgen"
)

// sleeping is which of a live version's units sleep (inactive, their
// socket listening), and whether all of them do: then the app is
// sleeping, not degraded.
type sleeping struct {
	asleep map[string]bool
	all    bool
}

func sleepState(live *app.VersionStatus, units []unitgen.Status) sleeping {
	s := sleeping{asleep: map[string]bool{}}
	if live == nil || len(live.Sockets) == 0 {
		return s
	}
	byName := map[string]unitgen.Status{}
	for _, u := range units {
		byName[u.Name] = u
	}
	for unit, sock := range live.Sockets {
		u, sk := byName[unit], byName[sock]
		if sk.ActiveState == "active" && (u.Name == "" || u.ActiveState == "inactive") {
			s.asleep[unit] = true
		}
	}
	s.all = len(s.asleep) == len(live.Sockets)
	return s
}
