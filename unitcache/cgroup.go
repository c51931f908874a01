package unitcache

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/keter-systemd/keter/internal/cgroup"
	"github.com/keter-systemd/keter/unitgen"
)

var mount = sync.OnceValues(cgroup.Mount)

// ReadCgroup reads a keter.slice unit's memory, CPU, tasks and IO from its
// cgroup v2 files, as systemd itself computes MemoryCurrent, CPUUsageNSec,
// TasksCurrent and IORead/WriteBytes. Figures it cannot read stay Unset
// (a hybrid host has no memory or pids files in its v2 tree); false when
// the unit has no cgroup.
func ReadCgroup(unit string) (unitgen.Figures, bool) {
	m, err := mount()
	if err != nil {
		return unitgen.Figures{}, false
	}
	return readCgroupAt(filepath.Join(m, unitgen.Slice, unit))
}

func readCgroupAt(dir string) (unitgen.Figures, bool) {
	f := unitgen.NoFigures()
	stat, err := os.ReadFile(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return f, false
	}
	if v, ok := field(string(stat), "usage_usec"); ok {
		f[unitgen.CPU] = v * 1000
	}
	if v, ok := single(filepath.Join(dir, "memory.current")); ok {
		f[unitgen.Memory] = v
	}
	if v, ok := single(filepath.Join(dir, "pids.current")); ok {
		f[unitgen.Tasks] = v
	}
	if b, err := os.ReadFile(filepath.Join(dir, "io.stat")); err == nil {
		var r, w uint64
		for line := range strings.Lines(string(b)) {
			fs := strings.Fields(line)
			if len(fs) < 2 {
				continue
			}
			for _, kv := range fs[1:] {
				k, v, _ := strings.Cut(kv, "=")
				n, err := strconv.ParseUint(v, 10, 64)
				switch {
				case err != nil:
				case k == "rbytes":
					r += n
				case k == "wbytes":
					w += n
				}
			}
		}
		f[unitgen.IORead], f[unitgen.IOWrite] = r, w
	}
	return f, true
}

// field finds "key value" in a flat-keyed cgroup file.
func field(s, key string) (uint64, bool) {
	for line := range strings.Lines(s) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), key+" "); ok {
			n, err := strconv.ParseUint(v, 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func single(path string) (uint64, bool) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
