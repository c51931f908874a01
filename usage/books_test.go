package usage

import (
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

var t0 = time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

// unit is a listed unit of app "shop": its run started at second started
// (0: no run), memory and CPU (ns) as systemd reads them; IP is unset, as
// on a host without cgroup BPF.
func unit(name string, started int, mem, cpu uint64) unitgen.Status {
	m, _ := unitgen.ParseUnitName(name)
	s := unitgen.Status{Name: name, Meta: m, ActiveState: "active", Usage: unitgen.Usage{Figures: unitgen.NoFigures()}}
	if started != 0 {
		s.Usage.Started = uint64(at(started).UnixMicro())
		s.Usage.Figures[unitgen.Memory], s.Usage.Figures[unitgen.CPU] = mem, cpu
	}
	return s
}

func final(name, inv string, sec int, cpu uint64) unitgen.Final {
	f := unitgen.Final{Unit: name, Invocation: inv, At: at(sec), Figures: unitgen.NoFigures()}
	f.Figures[unitgen.CPU] = cpu
	return f
}

const (
	web0v1 = "keter-app-shop-v1-web0.service"
	web0v2 = "keter-app-shop-v2-web0.service"
	bg1v1  = "keter-app-shop-v1-bg1.service"
)

var web0 = Key{"shop", "web0"}

// ledger drives books and checks after every step that no total went down.
type ledger struct {
	t    *testing.T
	b    *books
	last map[Key]Stanza
}

func newLedger(t *testing.T) *ledger { return &ledger{t: t, b: newBooks(), last: map[Key]Stanza{}} }

// list observes units read at second sec; invs names their runs.
func (l *ledger) list(sec int, invs map[string]string, units ...unitgen.Status) {
	l.t.Helper()
	need := map[string]string{}
	for _, u := range units {
		if l.b.needsRun(u) {
			need[u.Name] = invs[u.Name]
		}
	}
	l.b.observe(units, need, at(sec))
	l.check()
}

func (l *ledger) final(f unitgen.Final) {
	l.t.Helper()
	l.b.final(f, f.At)
	l.check()
}

func (l *ledger) check() {
	l.t.Helper()
	now := l.b.totals()
	for k, was := range l.last {
		for _, f := range counters {
			w, _ := was.Get(f)
			n, _ := now[k].Get(f)
			if n < w {
				l.t.Fatalf("%v %s went down: %d → %d", k, f, w, n)
			}
		}
	}
	l.last = now
}

func (l *ledger) want(k Key, fig unitgen.Figure, want uint64) {
	l.t.Helper()
	got, ok := l.b.totals()[k].Get(fig)
	if !ok || got != want {
		l.t.Fatalf("%v %s = %d (counted: %v), want %d", k, fig, got, ok, want)
	}
}

func (l *ledger) wantNone(k Key, fig unitgen.Figure) {
	l.t.Helper()
	if got, ok := l.b.totals()[k].Get(fig); ok {
		l.t.Fatalf("%v %s = %d, want it not counted", k, fig, got)
	}
}

func TestTotalsStartAtZeroForRunsAlreadyGoing(t *testing.T) {
	l := newLedger(t)
	l.list(100, map[string]string{web0v1: "i1"}, unit(web0v1, 50, 10<<20, 7000))
	l.want(web0, unitgen.CPU, 0)
	l.want(web0, unitgen.Memory, 10<<20)
	if s := l.b.totals()[web0].Since; !s.Equal(at(100)) {
		t.Errorf("since %s, want keter's first look %s", s, at(100))
	}
	l.list(110, nil, unit(web0v1, 50, 12<<20, 9500))
	l.want(web0, unitgen.CPU, 2500)
	l.want(web0, unitgen.Memory, 12<<20)
	// Its final record counts from keter's start too.
	l.final(final(web0v1, "i1", 115, 10000))
	l.list(120, nil)
	l.want(web0, unitgen.CPU, 3000)
	l.wantNone(web0, unitgen.Memory)
}

func TestCrashRestartKeepsTheEndedRun(t *testing.T) {
	for _, tt := range []struct {
		name        string
		recordFirst bool // the final record is read before the list shows the new run
	}{{"record after the new run", false}, {"record before the new run", true}} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLedger(t)
			l.list(0, nil)
			l.list(10, map[string]string{web0v1: "i1"}, unit(web0v1, 5, 1<<20, 1000))
			l.want(web0, unitgen.CPU, 1000)
			if tt.recordFirst {
				l.list(12, nil, unit(web0v1, 5, unitgen.Unset, 1000)) // auto-restart: no memory
				l.final(final(web0v1, "i1", 12, 1800))
				l.want(web0, unitgen.CPU, 1800)
			}
			l.list(14, map[string]string{web0v1: "i2"}, unit(web0v1, 13, 1<<20, 100))
			if !tt.recordFirst {
				l.want(web0, unitgen.CPU, 1100) // the ended run as last read
				l.final(final(web0v1, "i1", 12, 1800))
			}
			l.want(web0, unitgen.CPU, 1900)
			// systemd logs a second record for the same run when it restarts it.
			l.final(final(web0v1, "i1", 13, 1800))
			l.want(web0, unitgen.CPU, 1900)
			l.list(20, nil, unit(web0v1, 13, 1<<20, 400))
			l.want(web0, unitgen.CPU, 2200)
		})
	}
}

func TestReplacementAddsUpAndKeepsTheOldVersion(t *testing.T) {
	l := newLedger(t)
	l.list(0, nil)
	l.list(10, map[string]string{web0v1: "a", bg1v1: "b"}, unit(web0v1, 1, 3<<20, 5000), unit(bg1v1, 1, 1<<20, 50))
	l.want(Key{"shop", "bg1"}, unitgen.CPU, 50)
	// The new version runs beside the old one while it drains.
	l.list(20, map[string]string{web0v2: "c"}, unit(web0v1, 1, 3<<20, 6000), unit(web0v2, 19, 2<<20, 300), unit(bg1v1, 1, 1<<20, 60))
	l.want(web0, unitgen.Memory, 5<<20)
	l.want(web0, unitgen.CPU, 6300)
	// The old version is stopped and collected; its record comes later.
	l.list(30, nil, unit(web0v2, 19, 2<<20, 500), unit(bg1v1, 1, 1<<20, 60))
	l.want(web0, unitgen.CPU, 6500)
	l.want(web0, unitgen.Memory, 2<<20)
	l.final(final(web0v1, "a", 29, 6100))
	l.want(web0, unitgen.CPU, 6600)
}

func TestRunsNeverListed(t *testing.T) {
	l := newLedger(t)
	l.list(0, nil)
	// A run that started and crashed between two lists.
	l.final(final(web0v1, "x1", 5, 700))
	l.want(web0, unitgen.CPU, 700)
	// The next list shows the unit waiting to restart, still with that run.
	l.list(6, map[string]string{web0v1: "x1"}, unit(web0v1, 4, unitgen.Unset, 700))
	l.want(web0, unitgen.CPU, 700)
	l.list(8, map[string]string{web0v1: "x2"}, unit(web0v1, 7, 1<<20, 20))
	l.want(web0, unitgen.CPU, 720)
	// Records from before keter's totals began, or for other services, do nothing.
	l.final(final(web0v1, "old", -5, 99999))
	l.final(final("nginx.service", "n", 9, 99999))
	l.want(web0, unitgen.CPU, 720)
}

func TestHybridCgroupsKeepTheLastReading(t *testing.T) {
	// systemd logs no CPU in its record: the ended run counts as last read.
	l := newLedger(t)
	l.list(0, nil)
	u := unit(web0v1, 1, 1<<20, 400)
	u.Usage.Figures[unitgen.IPIn] = 10
	l.list(2, map[string]string{web0v1: "i1"}, u)
	f := final(web0v1, "i1", 3, unitgen.Unset)
	f.Figures[unitgen.IPIn] = 15
	l.list(4, map[string]string{web0v1: "i2"}, unit(web0v1, 4, 1<<20, 0))
	l.final(f)
	l.want(web0, unitgen.CPU, 400)
	l.want(web0, unitgen.IPIn, 15)
	l.wantNone(web0, unitgen.IORead)
}

func TestStaleListIsIgnored(t *testing.T) {
	l := newLedger(t)
	l.list(0, nil)
	l.list(10, map[string]string{web0v1: "i1"}, unit(web0v1, 1, 1<<20, 100))
	l.list(20, map[string]string{web0v1: "i2", web0v2: "n1"}, unit(web0v1, 15, 1<<20, 50), unit(web0v2, 18, 2<<20, 5))
	// A slower reader's list, read before the last one, applied after it:
	// it shows web0v1's ended run and not yet web0v2.
	l.list(12, map[string]string{web0v1: "i1"}, unit(web0v1, 1, 1<<20, 120))
	l.want(web0, unitgen.CPU, 155)
	l.want(web0, unitgen.Memory, 3<<20)
	// An older run in a newer list is not taken back either.
	l.list(21, nil, unit(web0v1, 1, 1<<20, 120), unit(web0v2, 18, 2<<20, 5))
	l.want(web0, unitgen.CPU, 155)
}

func TestUnknownRunIDWaits(t *testing.T) {
	l := newLedger(t)
	l.list(0, nil)
	l.list(10, map[string]string{web0v1: "i1"}, unit(web0v1, 1, 1<<20, 100))
	// The new run's ID could not be read (it restarted again meanwhile):
	// the old run stays current until the next list.
	l.list(20, map[string]string{}, unit(web0v1, 15, 1<<20, 10))
	l.want(web0, unitgen.CPU, 100)
	l.list(30, map[string]string{web0v1: "i3"}, unit(web0v1, 25, 1<<20, 10))
	l.want(web0, unitgen.CPU, 110)
}

func TestEvict(t *testing.T) {
	l := newLedger(t)
	l.list(0, nil)
	l.list(1, map[string]string{web0v1: "i1"}, unit(web0v1, 1, 1<<20, 100))
	l.list(2, nil)
	l.b.evict(at(2).Add(closedFor + time.Second))
	if len(l.b.closed) != 0 || len(l.b.keys) != 1 {
		t.Fatalf("after %s: %d closed runs, %d keys; want 0 and 1", closedFor, len(l.b.closed), len(l.b.keys))
	}
	l.b.evict(at(2).Add(idleFor + time.Second))
	if len(l.b.keys) != 0 {
		t.Fatalf("an idle key was kept past %s", idleFor)
	}
}
