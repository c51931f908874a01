package dbus

import (
	"context"
	"fmt"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

// TestHubFansOutInOrderAndEnds: every subscription that joined gets every
// later signal in order, a job's result is recorded, a subscription that
// left gets nothing more, and all end when the connection's channel closes.
func TestHubFansOutInOrderAndEnds(t *testing.T) {
	h := newHub()
	sigs := make(chan *godbus.Signal)
	done := make(chan struct{})
	go func() { h.run(sigs); close(done) }()
	a, _ := h.join()
	b, leaveB := h.join()
	result := h.results.wait(42)
	var sent []*godbus.Signal
	for i := range 5 {
		s := &godbus.Signal{Name: string(rune('a' + i))}
		sent = append(sent, s)
		sigs <- s // run never makes the sender wait on a subscriber
	}
	sigs <- removedSignal(42, "done")
	takeN := func(q *signalQueue, n int) []*godbus.Signal {
		var got []*godbus.Signal
		for len(got) < n {
			batch, ok := q.take(t.Context())
			if !ok {
				t.Fatal("queue ended early")
			}
			got = append(got, batch...)
		}
		return got
	}
	gotB := takeN(b, len(sent)+1)
	leaveB()
	sigs <- &godbus.Signal{Name: "after b left"}
	gotA := takeN(a, len(sent)+2)
	for _, got := range [][]*godbus.Signal{gotA, gotB} {
		for i := range sent {
			if got[i] != sent[i] {
				t.Fatalf("signal %d is %q, want %q", i, got[i].Name, sent[i].Name)
			}
		}
	}
	if len(gotA) != len(sent)+2 || gotA[len(sent)+1].Name != "after b left" {
		t.Errorf("the subscription that stayed got %d signals, not the last one", len(gotA))
	}
	b.mu.Lock()
	extra := len(b.sigs)
	b.mu.Unlock()
	if len(gotB) != len(sent)+1 || extra != 0 {
		t.Errorf("a subscription that left got %d more signals", len(gotB)-len(sent)-1+extra)
	}
	select {
	case r := <-result:
		if r != "done" {
			t.Errorf("job result %q, want done", r)
		}
	default:
		t.Error("the JobRemoved signal's result was not recorded")
	}
	close(sigs)
	<-done
	if _, ok := a.take(t.Context()); ok {
		t.Error("take after the connection closed returned a batch")
	}
	late, _ := h.join()
	if _, ok := late.take(t.Context()); ok {
		t.Error("a subscription that joined a closed connection got a batch")
	}
}

// TestHandleBatch: a raw watcher sends every change of a batch in order,
// and a removal as "gone".
func TestHandleBatch(t *testing.T) {
	out := make(chan unitgen.Status, 10)
	w := watcher{prefix: "keter-app-", raw: true, out: out, known: map[string]unitgen.Status{}, sent: map[string]unitgen.Status{}}
	name := "keter-app-web-v1-web0.service"
	path := godbus.ObjectPath(unitPathPrefix + "keter_2dapp_2dweb_2dv1_2dweb0_2eservice")
	props := func(state string) *godbus.Signal {
		return &godbus.Signal{Name: propsChanged, Path: path, Body: []any{ifaceUnit, map[string]godbus.Variant{"ActiveState": godbus.MakeVariant(state)}}}
	}
	w.handle(context.Background(), []*godbus.Signal{
		props("activating"), props("active"),
		{Name: propsChanged, Path: "/org/freedesktop/systemd1/unit/other_2eservice", Body: []any{ifaceUnit, map[string]godbus.Variant{"ActiveState": godbus.MakeVariant("active")}}},
		{Name: unitRemoved, Body: []any{name, godbus.ObjectPath(path)}},
	})
	close(out)
	var got []string
	for s := range out {
		got = append(got, s.Name+" "+s.ActiveState)
	}
	want := []string{name + " activating", name + " active", name + " gone"}
	if len(got) != len(want) {
		t.Fatalf("sent %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("sent %v, want %v", got, want)
			break
		}
	}
}

// TestHandleReadsBackOnlyWhatNeedsIt: a full (not raw) watcher sends a
// known unit's ordinary changes as the signals say; it reads back (here a
// nil client, so a read would panic) only a unit seen first, or one that
// seems to stop or fail.
func TestHandleReadsBackOnlyWhatNeedsIt(t *testing.T) {
	out := make(chan unitgen.Status, 10)
	name := "keter-app-web-v1-web0.service"
	w := watcher{prefix: "keter-app-", out: out, known: map[string]unitgen.Status{name: {Name: name, ActiveState: "inactive"}}, sent: map[string]unitgen.Status{}}
	path := godbus.ObjectPath(unitPathPrefix + "keter_2dapp_2dweb_2dv1_2dweb0_2eservice")
	props := func(iface string, kv map[string]godbus.Variant) *godbus.Signal {
		return &godbus.Signal{Name: propsChanged, Path: path, Body: []any{iface, kv}}
	}
	w.handle(context.Background(), []*godbus.Signal{
		props(ifaceUnit, map[string]godbus.Variant{"ActiveState": godbus.MakeVariant("activating")}),
		props(ifaceService, map[string]godbus.Variant{"MainPID": godbus.MakeVariant(uint32(42))}),
		props(ifaceUnit, map[string]godbus.Variant{"ActiveState": godbus.MakeVariant("active")}),
	})
	close(out)
	var got []string
	for s := range out {
		got = append(got, fmt.Sprintf("%s %d", s.ActiveState, s.MainPID))
	}
	want := []string{"activating 0", "activating 42", "active 42"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("sent %v, want %v", got, want)
	}
	for _, c := range []struct {
		known map[string]unitgen.Status
		state string
	}{
		{map[string]unitgen.Status{}, "active"},
		{map[string]unitgen.Status{name: {Name: name, ActiveState: "active"}}, "failed"},
		{map[string]unitgen.Status{name: {Name: name, ActiveState: "active"}}, "inactive"},
		{map[string]unitgen.Status{name: {Name: name, ActiveState: "active"}}, "deactivating"},
	} {
		first, state := c.known, c.state
		w := watcher{prefix: "keter-app-", out: make(chan unitgen.Status, 10), known: first, sent: map[string]unitgen.Status{}}
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("a %s unit (known: %v) was not read back", state, len(first) > 0)
				}
			}()
			w.handle(context.Background(), []*godbus.Signal{props(ifaceUnit, map[string]godbus.Variant{"ActiveState": godbus.MakeVariant(state)})})
		}()
	}
}
