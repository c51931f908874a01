package unitcache

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/keter-systemd/keter/unitgen"
)

// hierarchies are where each cgroup tree systemd counts in is mounted:
// the v2 tree (on a hybrid host only the unified one, which still has
// cpu.stat) and, on v1 and hybrid hosts, the memory and pids trees.
type hierarchies struct{ v2, memory, pids string }

// systemdRoot is the cgroup systemd (PID 1 of keter's PID namespace)
// names its units' cgroups under, in every hierarchy: "/" on a host, a
// sub-cgroup in a container. systemd takes it from its own place in its
// tree (v2, or v1's name=systemd), less init.scope.
func systemdRoot() string {
	b, err := os.ReadFile("/proc/1/cgroup")
	if err != nil {
		return "/"
	}
	root := "/"
	for line := range strings.Lines(string(b)) {
		parts := strings.SplitN(strings.TrimSpace(line), ":", 3)
		if len(parts) == 3 && (parts[1] == "" || parts[1] == "name=systemd") {
			root = strings.TrimSuffix(parts[2], "/init.scope")
			if parts[1] == "" {
				break
			}
		}
	}
	return root
}

var mounts = sync.OnceValue(func() hierarchies {
	var h hierarchies
	root := systemdRoot()
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return h
	}
	for line := range strings.Lines(string(b)) {
		fs := strings.Fields(line)
		if len(fs) < 4 {
			continue
		}
		switch {
		case fs[2] == "cgroup2":
			h.v2 = filepath.Join(fs[1], root)
		case fs[2] == "cgroup" && slices.Contains(strings.Split(fs[3], ","), "memory"):
			h.memory = filepath.Join(fs[1], root)
		case fs[2] == "cgroup" && slices.Contains(strings.Split(fs[3], ","), "pids"):
			h.pids = filepath.Join(fs[1], root)
		}
	}
	return h
})

// ReadCgroup reads a keter.slice unit's memory, CPU, tasks and IO from its
// cgroup files, as systemd 252 computes MemoryCurrent (memory.current, or
// v1's memory.usage_in_bytes), CPUUsageNSec (cpu.stat), TasksCurrent
// (pids.current) and IORead/WriteBytes (io.stat, v2 only). Figures it
// cannot read stay Unset; false when the unit has no v2 cgroup.
func ReadCgroup(unit string) (unitgen.Figures, bool) {
	h := mounts()
	if h.v2 == "" {
		return unitgen.Figures{}, false
	}
	r := readers.Get().(*fileReader)
	defer readers.Put(r)
	// On a hybrid host the v2 tree has cpu.stat alone: read no more there.
	f, ok := r.cgroupAt(filepath.Join(h.v2, unitgen.Slice, unit), h.memory != "")
	if !ok {
		return f, false
	}
	if h.memory != "" && f[unitgen.Memory] == unitgen.Unset {
		if v, ok := r.single(filepath.Join(h.memory, unitgen.Slice, unit, "memory.usage_in_bytes")); ok {
			f[unitgen.Memory] = v
		}
	}
	if h.pids != "" && f[unitgen.Tasks] == unitgen.Unset {
		if v, ok := r.single(filepath.Join(h.pids, unitgen.Slice, unit, "pids.current")); ok {
			f[unitgen.Tasks] = v
		}
	}
	return f, true
}

// fileReader reads cgroup files into one buffer. os.ReadFile sizes a
// buffer by the size a file reports, 4096 for a cgroup file however
// little it holds: a read of every unit's cgroup allocated about 14 MB
// at 1000 units, which keter's heap then held until its next trim.
type fileReader struct{ buf []byte }

var readers = sync.Pool{New: func() any { return &fileReader{buf: make([]byte, 0, 1024)} }}

// read returns the file's content, valid until the next read.
func (r *fileReader) read(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r.buf = r.buf[:0]
	for {
		if len(r.buf) == cap(r.buf) {
			r.buf = slices.Grow(r.buf, max(cap(r.buf), 512))
		}
		n, err := f.Read(r.buf[len(r.buf):cap(r.buf)])
		r.buf = r.buf[:len(r.buf)+n]
		if err == io.EOF {
			return r.buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

func (r *fileReader) cgroupAt(dir string, cpuOnly bool) (unitgen.Figures, bool) {
	f := unitgen.NoFigures()
	stat, err := r.read(filepath.Join(dir, "cpu.stat"))
	if err != nil {
		return f, false
	}
	if v, ok := field(string(stat), "usage_usec"); ok {
		f[unitgen.CPU] = v * 1000
	}
	if cpuOnly {
		return f, true
	}
	if v, ok := r.single(filepath.Join(dir, "memory.current")); ok {
		f[unitgen.Memory] = v
	}
	if v, ok := r.single(filepath.Join(dir, "pids.current")); ok {
		f[unitgen.Tasks] = v
	}
	if b, err := r.read(filepath.Join(dir, "io.stat")); err == nil {
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

func (r *fileReader) single(path string) (uint64, bool) {
	b, err := r.read(path)
	if err != nil {
		return 0, false
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return n, err == nil
}
