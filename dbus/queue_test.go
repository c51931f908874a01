package dbus

import (
	"context"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

func TestSignalQueueKeepsOrderAndEnds(t *testing.T) {
	sigs := make(chan *godbus.Signal)
	q := &signalQueue{ready: make(chan struct{}, 1)}
	done := make(chan struct{})
	go func() { q.fill(t.Context(), sigs); close(done) }()
	var sent []*godbus.Signal
	for i := range 5 {
		s := &godbus.Signal{Name: string(rune('a' + i))}
		sent = append(sent, s)
		sigs <- s // fill never makes the sender wait on follow
	}
	var got []*godbus.Signal
	for len(got) < len(sent) {
		batch, ok := q.take(t.Context())
		if !ok {
			t.Fatal("queue ended early")
		}
		got = append(got, batch...)
	}
	for i := range sent {
		if got[i] != sent[i] {
			t.Fatalf("signal %d is %q, want %q", i, got[i].Name, sent[i].Name)
		}
	}
	close(sigs)
	<-done
	if _, ok := q.take(t.Context()); ok {
		t.Error("take after the connection closed returned a batch")
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
