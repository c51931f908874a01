package app

import (
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/bundle"
	"github.com/keter-systemd/keter/unitgen"
)

// version is one unpacked and started bundle of an app.
type version struct {
	app        string
	id         string
	digest     string
	file       fileID
	bundle     string
	dir        string
	cfg        *bundle.AppConfig
	web        map[int][]*instance // webapp stanza index → its instances
	spare      map[int][]int       // webapp stanza index → its spare fronts
	canary     map[int][]int       // webapp stanza index → the app's canary fronts
	units      []string            // background first, then webapps
	jobs       []*job              // scheduled stanzas: not in units
	envFiles   []string
	deployedAt time.Time
	manifest   string // bundle.Manifest of dir as unpacked
	steps      stepTimer

	// opEnv is the operator env file as the units were built from it:
	// a restart in place is only for units whose env is still current.
	opEnv fileID
	// execs counts keter exec commands running in its folder (m.mu).
	execs int
}

// instance is one unit of a webapp stanza.
type instance struct {
	unit  string
	port  int      // its own port
	front int      // the app's stable front port for this slot, kept across versions
	down  bool     // its unit stopped for good
	sleep *sleeper // idle-stop: a socket holds port while it sleeps

	// resting: out of rotation while it restarts in place (keter
	// restart); its front goes to the other instances. Guarded by m.mu.
	resting bool
}

// fileID tells whether a bundle file changed without reading it.
type fileID struct {
	Size  int64  `json:"size"`
	Mtime int64  `json:"mtime_ns"`
	Inode uint64 `json:"inode"`
}

func identify(fi os.FileInfo) fileID {
	id := fileID{Size: fi.Size(), Mtime: fi.ModTime().UnixNano()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		id.Inode = st.Ino
	}
	return id
}

// stepTimer records how long each deploy step took, for the log.
type stepTimer struct {
	last  time.Time
	parts []string
}

func (s *stepTimer) mark(step string) {
	now := time.Now()
	if !s.last.IsZero() {
		s.parts = append(s.parts, step+"="+now.Sub(s.last).Round(time.Millisecond).String())
	}
	s.last = now
}

func (s stepTimer) String() string { return strings.Join(s.parts, ",") }

// instanceMeta names instance k (0-based) of n of webapp stanza i.
func instanceMeta(app, id string, i, k, n int) unitgen.Meta {
	m := unitgen.Meta{App: app, Version: id, Stanza: unitgen.StanzaName(bundle.TypeWebApp, i)}
	if n > 1 {
		m.Instance = k + 1
	}
	return m
}

// slots lists a field of each webapp stanza's instances, in order.
func (v *version) slots(f func(*instance) int) slots {
	out := slots{}
	for i, insts := range v.web {
		for _, in := range insts {
			out[i] = append(out[i], f(in))
		}
	}
	return out
}

func (v *version) portSlots() slots { return v.slots(func(in *instance) int { return in.port }) }

// frontSlots is each webapp stanza's fronts, spares after its instances'.
func (v *version) frontSlots() slots {
	out := slots{}
	for i := range v.web {
		if fs := v.frontsOf(i); len(fs) > 0 {
			out[i] = fs
		}
	}
	return out
}

// portList is every instance's own port.
func (v *version) portList() []int {
	var ps []int
	for _, insts := range v.web {
		for _, in := range insts {
			ps = append(ps, in.port)
			if in.sleep != nil && in.sleep.inner != 0 {
				ps = append(ps, in.sleep.inner)
			}
		}
	}
	slices.Sort(ps)
	return ps
}

// instanceOf finds the instance unit runs, with its stanza index.
func (v *version) instanceOf(unit string) (*instance, int) {
	for i, insts := range v.web {
		for _, in := range insts {
			if in.unit == unit || in.sleep != nil && in.sleep.socket == unit {
				return in, i
			}
		}
	}
	return nil, 0
}

func (v *version) asLive() Live {
	l := Live{Name: v.app, Version: v.id, Dir: v.dir, Config: v.cfg, Ports: v.portSlots(), Fronts: v.frontSlots(), Down: map[int]bool{}, Resting: map[int]bool{}, CanaryFronts: v.canarySlots()}
	for _, insts := range v.web {
		for _, in := range insts {
			if in.down {
				l.Down[in.port] = true
			}
			if in.resting {
				l.Resting[in.port] = true
			}
		}
	}
	return l
}

func (v *version) record() liveRecord {
	return liveRecord{
		Version: v.id, Digest: v.digest, File: v.file, Bundle: v.bundle, Dir: v.dir, Ports: v.portSlots(),
		Fronts: v.frontSlots(), CanaryFronts: v.canarySlots(), Units: v.units, Jobs: v.jobs, EnvFiles: v.envFiles, DeployedAt: v.deployedAt,
		Sleepers: v.sleepRecords(), OperatorEnv: v.opEnv, Manifest: v.manifest,
	}
}
