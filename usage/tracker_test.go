package usage

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/keter-systemd/keter/unitgen"
)

// fakeUnits stands in for systemd at the D-Bus boundary.
type fakeUnits struct {
	mu      sync.Mutex
	list    []unitgen.Status
	runs    map[string]string // unit → InvocationID
	started map[string]uint64 // what RunID reports as the run's start, when it differs
	finals  []unitgen.Final
	err     error // Finals fails with it
	reads   int
}

func (f *fakeUnits) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.list, nil
}

func (f *fakeUnits) RunID(ctx context.Context, unit string) (string, uint64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.list {
		if s.Name == unit {
			if st, ok := f.started[unit]; ok {
				return f.runs[unit], st, nil
			}
			return f.runs[unit], s.Usage.Started, nil
		}
	}
	return "", 0, errors.New("no such unit")
}

func (f *fakeUnits) Finals(ctx context.Context, prefix, cursor string, since time.Time) ([]unitgen.Final, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	if f.err != nil {
		return nil, cursor, f.err
	}
	out := f.finals
	f.finals = nil
	return out, "c", nil
}

func TestTrackerReadsRunsAndFinals(t *testing.T) {
	f := &fakeUnits{runs: map[string]string{}, started: map[string]uint64{}}
	tr := New(f, "keter-app-", nil)
	ctx := context.Background()
	if err := tr.Refresh(ctx); err != nil { // keter's totals begin
		t.Fatal(err)
	}
	now := int(time.Since(t0).Seconds()) + 2 // runs that start after keter
	cpu := func() uint64 {
		list, _ := f.List(ctx, "")
		v, _ := tr.Observe(ctx, list, time.Now())[web0].Get(unitgen.CPU)
		return v
	}

	f.list = []unitgen.Status{unit(web0v1, now, 1<<20, 500)}
	f.runs[web0v1] = "r1"
	if got := cpu(); got != 500 {
		t.Fatalf("CPU %d, want the new run's 500", got)
	}
	// It restarted between the list and RunID: the new run waits for the next list.
	f.list = []unitgen.Status{unit(web0v1, now+1, 1<<20, 10)}
	f.runs[web0v1], f.started[web0v1] = "r3", uint64(at(now+2).UnixMicro())
	if got := cpu(); got != 500 {
		t.Fatalf("CPU %d, want 500 until the run is known", got)
	}
	delete(f.started, web0v1)
	f.runs[web0v1] = "r2"
	if got := cpu(); got != 510 {
		t.Fatalf("CPU %d, want 500 + 10", got)
	}
	// systemd's final record of r1 raises it; records are read at most once a second.
	f.finals = []unitgen.Final{final(web0v1, "r1", now+1, 800)}
	tr.lastFinals = time.Time{}
	if got := cpu(); got != 810 {
		t.Fatalf("CPU %d, want r1's final 800 + 10", got)
	}
	reads := f.reads
	cpu()
	if f.reads != reads {
		t.Errorf("the journal was read again within a second")
	}
	// r2's own record is matched to it, not counted as a run never seen.
	f.finals = []unitgen.Final{final(web0v1, "r2", now+3, 50)}
	tr.lastFinals = time.Time{}
	if got := cpu(); got != 850 {
		t.Fatalf("CPU %d, want 800 + r2's final 50", got)
	}
	// A journal that cannot be read leaves totals as they are.
	f.err = errors.New("journalctl: not found")
	tr.lastFinals = time.Time{}
	if got := cpu(); got != 850 {
		t.Fatalf("CPU %d after a failed journal read, want 850", got)
	}
}
