package app

import (
	"maps"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/keter-systemd/keter/bundle"
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
	ports      map[int]int // stanza index → the version's own port
	fronts     map[int]int // stanza index → the app's stable front port
	units      []string    // background first, then webapps
	webUnits   map[int]string
	down       map[int]bool // webapp stanzas whose unit stopped for good
	envFiles   []string
	deployedAt time.Time
	steps      stepTimer
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

func (v *version) asLive() Live {
	return Live{Name: v.app, Version: v.id, Dir: v.dir, Config: v.cfg, Ports: v.ports, Fronts: v.fronts, Down: maps.Clone(v.down)}
}

func (v *version) record() liveRecord {
	return liveRecord{
		Version: v.id, Digest: v.digest, File: v.file, Bundle: v.bundle, Dir: v.dir, Ports: v.ports,
		Fronts: v.fronts, Units: v.units, EnvFiles: v.envFiles, DeployedAt: v.deployedAt,
	}
}

func (v *version) portList() []int {
	ps := make([]int, 0, len(v.ports))
	for _, p := range v.ports {
		ps = append(ps, p)
	}
	return ps
}
