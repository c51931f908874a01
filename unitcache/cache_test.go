package unitcache

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// fakeSource is systemd as the cache sees it: a table of units, read by
// List (counted), and a channel of signals the test sends by hand.
type fakeSource struct {
	mu    sync.Mutex
	units map[string]unitgen.Status
	lists int
	sigs  chan unitgen.Status
}

func (f *fakeSource) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lists++
	var out []unitgen.Status
	for n, s := range f.units {
		if strings.HasPrefix(n, prefix) {
			out = append(out, s)
		}
	}
	return out, nil
}

func (f *fakeSource) SubscribeStates(ctx context.Context, prefix string) (<-chan unitgen.Status, error) {
	return f.sigs, nil
}

func (f *fakeSource) set(s unitgen.Status) {
	f.mu.Lock()
	f.units[s.Name] = s
	f.mu.Unlock()
}

func (f *fakeSource) calls() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lists
}

func unit(name, state string, started, mem, cpu uint64) unitgen.Status {
	s := unitgen.Status{Name: name, ActiveState: state, SubState: "running", Usage: unitgen.Usage{Started: started, Figures: unitgen.NoFigures()}}
	s.Usage.Figures[unitgen.Memory], s.Usage.Figures[unitgen.CPU] = mem, cpu
	s.Usage.Figures[unitgen.IPIn] = 7
	return s
}

// cgroupFake stands for the units' cgroup files.
type cgroupFake map[string]unitgen.Figures

func (g cgroupFake) read(n string) (unitgen.Figures, bool) {
	f, ok := g[n]
	return f, ok
}

func (g cgroupFake) set(n string, mem, cpu uint64) {
	f := unitgen.NoFigures()
	f[unitgen.Memory], f[unitgen.CPU] = mem, cpu
	g[n] = f
}

func newTestCache(t *testing.T, units ...unitgen.Status) (*Cache, *fakeSource, cgroupFake) {
	t.Helper()
	src := &fakeSource{units: map[string]unitgen.Status{}, sigs: make(chan unitgen.Status)}
	for _, u := range units {
		src.set(u)
	}
	cg := cgroupFake{}
	c := New(src, "keter-app-", nil)
	c.Cgroups = cg.read
	return c, src, cg
}

func get(t *testing.T, c *Cache, name string) (unitgen.Status, bool) {
	t.Helper()
	list, err := c.List(t.Context(), "keter-app-")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list {
		if s.Name == name {
			return s, true
		}
	}
	return unitgen.Status{}, false
}

func TestListAsksSystemdNothing(t *testing.T) {
	c, src, _ := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20), unit("keter-app-b.service", "active", 1, 10, 20))
	c.full(t.Context())
	before := src.calls()
	for range 100 {
		list, err := c.List(t.Context(), "keter-app-")
		if err != nil || len(list) != 2 {
			t.Fatalf("List = %d units, %v; want 2", len(list), err)
		}
	}
	if got := src.calls() - before; got != 0 {
		t.Errorf("100 Lists read systemd %d times; want 0", got)
	}
	// A prefix outside the cache's goes to systemd.
	if _, err := c.List(t.Context(), "keter-nginx"); err != nil || src.calls() != before+1 {
		t.Errorf("List(keter-nginx) = %v, %d calls; want it read from systemd", err, src.calls()-before)
	}
}

func TestSignalsUpdateState(t *testing.T) {
	c, src, _ := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20))
	c.full(t.Context())

	// A crash: the signal changes the state at once, keeps the figures
	// until the unit is read again.
	sig := unit("keter-app-a.service", "activating", 0, 0, 0)
	sig.SubState, sig.NRestarts = "auto-restart", 1
	c.apply(sig)
	s, _ := get(t, c, "keter-app-a.service")
	if s.ActiveState != "activating" || s.SubState != "auto-restart" || s.NRestarts != 1 {
		t.Errorf("after the signal: %s/%s restarts %d; want activating/auto-restart 1", s.ActiveState, s.SubState, s.NRestarts)
	}
	if s.Usage.Started != 1 || s.Usage.Figures[unitgen.Memory] != 10 {
		t.Errorf("after the signal: usage %+v; want the last read's kept", s.Usage)
	}
	// The new run, read in full after the signal.
	src.set(unit("keter-app-a.service", "active", 2, 5, 3))
	c.readDirty(t.Context())
	s, _ = get(t, c, "keter-app-a.service")
	if s.ActiveState != "active" || s.Usage.Started != 2 || s.Usage.Figures[unitgen.CPU] != 3 {
		t.Errorf("after the read: %s, usage %+v; want active, run 2 with cpu 3", s.ActiveState, s.Usage)
	}

	// A new unit and a unit systemd unloaded.
	c.apply(unitgen.Status{Name: "keter-app-b.service", ActiveState: "activating"})
	if s, ok := get(t, c, "keter-app-b.service"); !ok || s.ActiveState != "activating" {
		t.Errorf("new unit: %+v, %v; want it activating", s, ok)
	}
	c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "gone"})
	if _, ok := get(t, c, "keter-app-a.service"); ok {
		t.Error("a unit gone from systemd is still listed")
	}
}

func TestRefreshUpdatesUsage(t *testing.T) {
	c, _, cg := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20), unit("keter-app-b.service", "inactive", 1, 10, 20))
	// The cgroup counted 100 ns of CPU before this run (kept across an
	// automatic restart): the cache counts from the run's start as systemd does.
	cg.set("keter-app-a.service", 10, 120)
	cg.set("keter-app-b.service", 99, 999)
	c.full(t.Context())
	cg.set("keter-app-a.service", 50, 170)
	c.readCgroups()
	a, _ := get(t, c, "keter-app-a.service")
	if a.Usage.Figures[unitgen.Memory] != 50 || a.Usage.Figures[unitgen.CPU] != 70 {
		t.Errorf("after the refresh: memory %d cpu %d; want 50 and 70", a.Usage.Figures[unitgen.Memory], a.Usage.Figures[unitgen.CPU])
	}
	if a.Usage.Figures[unitgen.IPIn] != 7 {
		t.Errorf("IP in = %d; want 7, systemd's, kept (no cgroup file counts it)", a.Usage.Figures[unitgen.IPIn])
	}
	if b, _ := get(t, c, "keter-app-b.service"); b.Usage.Figures[unitgen.Memory] != 10 {
		t.Errorf("an inactive unit's memory became %d from its cgroup; want systemd's 10", b.Usage.Figures[unitgen.Memory])
	}
	// A unit a signal changed keeps its figures until it is read again:
	// its cgroup may already be the next run's.
	restarted := unit("keter-app-a.service", "active", 1, 0, 0)
	restarted.NRestarts = 1
	c.apply(restarted)
	cg.set("keter-app-a.service", 1, 1)
	c.readCgroups()
	if a, _ := get(t, c, "keter-app-a.service"); a.Usage.Figures[unitgen.Memory] != 50 {
		t.Errorf("a changed unit's memory = %d after a cgroup refresh; want 50 kept", a.Usage.Figures[unitgen.Memory])
	}
}

func TestSignalChangingNothingIsDropped(t *testing.T) {
	c, src, _ := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20))
	// Before the first full read a signal is only noted.
	c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "activating"})
	if len(c.dirty) != 0 {
		t.Errorf("a signal before the first read marked %v to be read again", c.dirty)
	}
	c.full(t.Context())
	// The subscription's first listing: states only, as the cache has them.
	c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "active", SubState: "running"})
	c.readDirty(t.Context())
	if got := src.calls(); got != 1 {
		t.Errorf("systemd read %d times; want 1 (the full read): an unchanged state was read again", got)
	}
	s, _ := get(t, c, "keter-app-a.service")
	if s.Usage.Figures[unitgen.Memory] != 10 {
		t.Errorf("memory %d after an unchanged state; want 10 kept", s.Usage.Figures[unitgen.Memory])
	}
}

func TestFullReadCorrectsMissedSignal(t *testing.T) {
	c, src, _ := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20), unit("keter-app-b.service", "active", 1, 10, 20))
	c.full(t.Context())
	// systemd changed a and dropped b, and no signal arrived.
	src.set(unit("keter-app-a.service", "failed", 1, 0, 20))
	src.mu.Lock()
	delete(src.units, "keter-app-b.service")
	src.mu.Unlock()
	if s, _ := get(t, c, "keter-app-a.service"); s.ActiveState != "active" {
		t.Fatalf("the cache saw a change it was not told of: %s", s.ActiveState)
	}
	c.full(t.Context())
	if s, _ := get(t, c, "keter-app-a.service"); s.ActiveState != "failed" {
		t.Errorf("after the full read: %s; want failed", s.ActiveState)
	}
	if _, ok := get(t, c, "keter-app-b.service"); ok {
		t.Error("after the full read a unit systemd no longer has is listed")
	}
}

func TestRunFollowsSignals(t *testing.T) {
	c, src, _ := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	// List waits for the first full read.
	if s, ok := get(t, c, "keter-app-a.service"); !ok || s.ActiveState != "active" {
		t.Fatalf("first List: %+v %v", s, ok)
	}
	// The signal is taken once the unbuffered send returns; one more
	// send makes sure the first was applied.
	src.sigs <- unitgen.Status{Name: "keter-app-a.service", ActiveState: "deactivating"}
	src.sigs <- unitgen.Status{Name: "keter-app-z.service", ActiveState: "activating"}
	src.sigs <- unitgen.Status{Name: "keter-app-z.service", ActiveState: "activating"}
	if s, _ := get(t, c, "keter-app-a.service"); s.ActiveState != "deactivating" {
		t.Errorf("after a signal through Run: %s; want deactivating", s.ActiveState)
	}
	cancel()
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestReadCgroupFiles(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"cpu.stat":       "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n",
		"memory.current": "4096\n",
		"pids.current":   "3\n",
		"io.stat":        "8:0 rbytes=100 wbytes=20 rios=1 wios=1 dbytes=0 dios=0\n8:16 rbytes=5 wbytes=1 rios=1 wios=1\n",
	}
	for n, body := range files {
		if err := os.WriteFile(filepath.Join(dir, n), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := new(fileReader) // one reader for every read, as ReadCgroup's
	f, ok := r.cgroupAt(dir, false)
	want := unitgen.NoFigures()
	want[unitgen.CPU], want[unitgen.Memory], want[unitgen.Tasks], want[unitgen.IORead], want[unitgen.IOWrite] = 1500000, 4096, 3, 105, 21
	if !ok || f != want {
		t.Errorf("cgroupAt = %v, %v; want %v", f, ok, want)
	}
	if f, _ := r.cgroupAt(dir, true); f[unitgen.CPU] != 1500000 || f[unitgen.Memory] != unitgen.Unset {
		t.Errorf("cgroupAt, CPU only = %v; want CPU alone", f)
	}
	// A hybrid host's v2 tree: cpu.stat only.
	os.Remove(filepath.Join(dir, "memory.current"))
	os.Remove(filepath.Join(dir, "pids.current"))
	os.Remove(filepath.Join(dir, "io.stat"))
	f, _ = r.cgroupAt(dir, false)
	if f[unitgen.Memory] != unitgen.Unset || f[unitgen.CPU] != 1500000 {
		t.Errorf("without memory.current: %v; want memory unset, CPU read", f)
	}
	if _, ok := r.cgroupAt(filepath.Join(dir, "nope"), false); ok {
		t.Error("a missing cgroup read as ok")
	}
}

func TestEndingRunKeepsItsLastFigures(t *testing.T) {
	c, src, cg := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20))
	cg.set("keter-app-a.service", 10, 20)
	c.full(t.Context())
	// The app burns CPU, then stops before the next cgroup refresh.
	cg.set("keter-app-a.service", 10, 320)
	c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "deactivating", SubState: "stop-sigterm"})
	var seen unitgen.Usage
	c.BeforeRead = func(ctx context.Context) {
		s, _ := get(t, c, "keter-app-a.service")
		seen = s.Usage
	}
	src.mu.Lock()
	delete(src.units, "keter-app-a.service")
	src.mu.Unlock()
	c.readDirty(t.Context())
	if seen.Started != 1 || seen.Figures[unitgen.CPU] != 320 {
		t.Errorf("before the read the run showed %+v; want run 1 with its last CPU, 320", seen)
	}
	if _, ok := get(t, c, "keter-app-a.service"); ok {
		t.Error("a unit systemd collected is still listed after it was read again")
	}
}

func TestReadDirtyListsEscapedNames(t *testing.T) {
	sock := `keter-app-a-v1-web0\x2dproxy.socket`
	c, _, _ := newTestCache(t, unitgen.Status{Name: sock, ActiveState: "active", SubState: "listening"})
	c.src = literalSource{c.src.(*fakeSource)}
	c.full(t.Context())
	c.apply(unitgen.Status{Name: sock, ActiveState: "active", SubState: "running"})
	c.readDirty(t.Context())
	if s, ok := get(t, c, sock); !ok || s.SubState != "listening" {
		t.Errorf("%s after it was read again: %+v, %v; want it listed, as systemd has it", sock, s, ok)
	}
}

// literalSource lists as systemd does: a backslash in the pattern is a
// backslash, not an escape.
type literalSource struct{ *fakeSource }

func (l literalSource) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	escaped := strings.ReplaceAll(prefix, `\`, `\\`) // as dbus.List's globEscape sends it
	return l.fakeSource.List(ctx, escaped)
}

// TestCachedReadsNoCgroup: Cached gives the figures the cache holds
// without reading any cgroup (List reads them when older than Fresh),
// and nothing before the first full read.
func TestCachedReadsNoCgroup(t *testing.T) {
	c, _, cg := newTestCache(t, unit("keter-app-a.service", "active", 1, 10, 20))
	if _, ok := c.Cached("keter-app-"); ok {
		t.Fatal("Cached answered before the first full read")
	}
	reads := 0
	c.Cgroups = func(n string) (unitgen.Figures, bool) { reads++; return cg.read(n) }
	c.full(t.Context())
	c.Fresh = time.Nanosecond
	before := reads
	list, ok := c.Cached("keter-app-")
	if !ok || len(list) != 1 || list[0].Name != "keter-app-a.service" {
		t.Fatalf("Cached = %v, %v; want the one unit", list, ok)
	}
	if reads != before {
		t.Errorf("Cached read %d cgroups; want none", reads-before)
	}
	if _, err := c.List(t.Context(), "keter-app-"); err != nil || reads == before {
		t.Errorf("List with stale figures read %d cgroups (%v); the test's reader is not in use", reads-before, err)
	}
}

// TestReadDirtyWaitsForStart: a unit seen starting is read back once it
// is up, not at each step of its start.
func TestReadDirtyWaitsForStart(t *testing.T) {
	c, src, _ := newTestCache(t)
	c.full(t.Context())
	before := src.calls()
	src.set(unit("keter-app-a.service", "active", 5, 10, 20))
	for _, sub := range []string{"start-pre", "start"} {
		c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "activating", SubState: sub})
		c.readDirty(t.Context())
		if n := src.calls(); n != before {
			t.Fatalf("a unit in activating/%s was read back (%d reads)", sub, n-before)
		}
	}
	c.apply(unitgen.Status{Name: "keter-app-a.service", ActiveState: "active", SubState: "running"})
	c.readDirty(t.Context())
	if s, ok := get(t, c, "keter-app-a.service"); src.calls() != before+1 || !ok || s.Usage.Started != 5 {
		t.Errorf("active unit: %d reads, %+v; want one read bringing its run's start", src.calls()-before, s)
	}
}

// TestFileReaderGrows: a file longer than the reader's buffer (an io.stat
// with many devices) is read whole, and the next read sees its own file.
func TestFileReaderGrows(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("8:0 rbytes=1 wbytes=2\n", 300)
	os.WriteFile(filepath.Join(dir, "long"), []byte(long), 0o644)
	os.WriteFile(filepath.Join(dir, "short"), []byte("42\n"), 0o644)
	r := readers.Get().(*fileReader)
	if b, err := r.read(filepath.Join(dir, "long")); err != nil || string(b) != long {
		t.Fatalf("read %d bytes, %v; want %d", len(b), err, len(long))
	}
	if v, ok := r.single(filepath.Join(dir, "short")); !ok || v != 42 {
		t.Fatalf("single after a long read = %d, %v; want 42", v, ok)
	}
}
