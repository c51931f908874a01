package unitcache_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/app"
	"github.com/keter-systemd/keter/dbus"
	"github.com/keter-systemd/keter/internal/testkit"
	"github.com/keter-systemd/keter/status"
	"github.com/keter-systemd/keter/unitcache"
	"github.com/keter-systemd/keter/unitgen"
	"github.com/keter-systemd/keter/usage"
)

// counted is the real systemd client with every call that reads a unit
// counted: List costs systemd one GetAll per unit it returns.
type counted struct {
	*dbus.Client
	mu                            sync.Mutex
	lists, listed, runIDs, finals int
}

func (c *counted) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	l, err := c.Client.List(ctx, prefix)
	c.mu.Lock()
	c.lists++
	c.listed += len(l)
	c.mu.Unlock()
	return l, err
}

func (c *counted) RunID(ctx context.Context, unit string) (string, uint64, error) {
	c.mu.Lock()
	c.runIDs++
	c.mu.Unlock()
	return c.Client.RunID(ctx, unit)
}

func (c *counted) snapshot() [3]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return [3]int{c.lists, c.listed, c.runIDs}
}

// cachedUnits is keter's wiring (cmd/keter): List from the cache, the
// rest from systemd.
type cachedUnits struct {
	*counted
	cache *unitcache.Cache
}

func (c cachedUnits) List(ctx context.Context, prefix string) ([]unitgen.Status, error) {
	return c.cache.List(ctx, prefix)
}

type core struct{ apps []app.AppStatus }

func (c core) Status() []app.AppStatus { return c.apps }
func (c core) Metrics() app.Metrics    { return app.Metrics{} }
func (c core) WaitDeploy(ctx context.Context, name, digest string, since time.Time) (app.AppStatus, error) {
	return app.AppStatus{}, nil
}
func (c core) Rollback(ctx context.Context, name string) (string, error) { return "", nil }
func (c core) RollbackTo(ctx context.Context, name, digest string) (string, error) {
	return "", nil
}
func (c core) SetMaintenance(ctx context.Context, name string, on bool, message string) error {
	return nil
}

// TestStatusAsksSystemdNothingPerUnit runs status, the API and /metrics on
// the unit cache over the sandbox systemd, with real units, and counts
// what they ask systemd.
func TestStatusAsksSystemdNothingPerUnit(t *testing.T) {
	testkit.NeedSystemd(t)
	ctx := t.Context()
	bus, err := dbus.New(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	src := &counted{Client: bus}
	name := "uc" + testkit.Token()
	var units []string
	for i := range 3 {
		m := unitgen.Meta{App: name, Version: "v1", Stanza: fmt.Sprintf("web%d", i)}
		u, err := m.Unit()
		if err != nil {
			t.Fatal(err)
		}
		props := []sddbus.Property{
			sddbus.PropDescription(unitgen.Description(m)), sddbus.PropType("exec"), sddbus.PropSlice(unitgen.Slice),
			sddbus.PropExecStart([]string{"/bin/sleep", "600"}, true),
			{Name: "MemoryAccounting", Value: godbus.MakeVariant(true)}, {Name: "CPUAccounting", Value: godbus.MakeVariant(true)},
			{Name: "TasksAccounting", Value: godbus.MakeVariant(true)},
		}
		if err := bus.StartTransient(ctx, u, props); err != nil {
			t.Fatal(err)
		}
		units = append(units, u)
		t.Cleanup(func() { bus.Stop(context.Background(), u) })
	}

	cache := unitcache.New(src, unitgen.Prefix, nil)
	cache.Interval = 100 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { cache.Run(runCtx); close(done) }()
	defer func() { stop(); <-done }()

	wired := cachedUnits{counted: src, cache: cache}
	dir := testkit.Root(t)
	srv := status.New(status.Options{
		Core:  core{apps: []app.AppStatus{{Name: name, LastResult: "live", Live: &app.VersionStatus{Version: "v1", Units: units}}}},
		Units: wired, Usage: usage.New(wired, unitgen.Prefix, nil),
		Listen: "127.0.0.1:0", Socket: filepath.Join(dir, "keter.sock"), Root: dir, Incoming: filepath.Join(dir, "incoming"),
	})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	go srv.Serve(runCtx)
	client := status.NewClient(filepath.Join(dir, "keter.sock"))

	ours := func() status.App {
		t.Helper()
		apps, err := client.Apps(ctx, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range apps {
			if a.Name == name {
				return a
			}
		}
		t.Fatalf("app %s missing from status", name)
		return status.App{}
	}
	// Every unit in, with memory read from its cgroup.
	waitFor(t, "the three units active with their memory", func() bool {
		a := ours()
		n := 0
		for _, u := range a.Units {
			if u.Active == "active" && u.Usage != nil && u.Usage.MemoryBytes != nil {
				n++
			}
		}
		return n == 3 && a.State == status.StateLive
	})
	if f, ok := unitcache.ReadCgroup(units[0]); !ok || f[unitgen.Memory] == unitgen.Unset || f[unitgen.Tasks] != 1 {
		t.Errorf("ReadCgroup(%s) = %v, %v; want memory read and 1 task (sleep)", units[0], f, ok)
	}

	before := src.snapshot()
	metricsURL := "http://" + srv.Addr().String() + "/metrics"
	for range 10 {
		ours()
		resp, err := http.Get(metricsURL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), "keter_apps") {
			t.Fatalf("/metrics without keter_apps:\n%s", body)
		}
	}
	after := src.snapshot()
	if after[0] != before[0] || after[2] != before[2] {
		t.Errorf("10 status and 10 /metrics requests read systemd: %d Lists (%d units), %d RunIDs; want none",
			after[0]-before[0], after[1]-before[1], after[2]-before[2])
	}

	// A stopped unit shows as soon as systemd signals it.
	if err := bus.Stop(ctx, units[1]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the stopped unit gone from status", func() bool {
		for _, u := range ours().Units {
			if u.Name == units[1] {
				return false
			}
		}
		return true
	})
}

// waitFor polls cond until it holds; systemd's signals arrive within
// milliseconds, the bound only ends a broken run.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("never saw %s", what)
}
