package dbus

import (
	"errors"
	"fmt"
	"testing"

	godbus "github.com/godbus/dbus/v5"

	"github.com/keter-systemd/keter/unitgen"
)

func TestUnitNameFromPath(t *testing.T) {
	tests := []struct {
		path godbus.ObjectPath
		want string
		ok   bool
	}{
		{"/org/freedesktop/systemd1/unit/keter_2dapp_2ddemo_2d1_2dweb0_2eservice", "keter-app-demo-1-web0.service", true},
		{"/org/freedesktop/systemd1/unit/keter_2dapp_2da_5cx20b_2d1_2dweb0_2eservice", `keter-app-a\x20b-1-web0.service`, true},
		{"/org/freedesktop/systemd1/unit/init_2escope", "init.scope", true},
		{"/org/freedesktop/systemd1", "", false},
		{"/org/freedesktop/systemd1/job/12", "", false},
	}
	for _, tt := range tests {
		got, ok := unitName(tt.path)
		if got != tt.want || ok != tt.ok {
			t.Errorf("unitName(%s) = %q, %v; want %q, %v", tt.path, got, ok, tt.want, tt.ok)
		}
	}
}

func TestWatcherApply(t *testing.T) {
	w := watcher{known: map[string]unitgen.Status{}, sent: map[string]unitgen.Status{}}
	name := "keter-app-demo-1-web0.service"
	s, changed := w.apply(name, ifaceUnit, map[string]godbus.Variant{
		"ActiveState": godbus.MakeVariant("active"), "SubState": godbus.MakeVariant("running"),
	})
	if !changed || s.ActiveState != "active" || s.SubState != "running" || s.Meta != (unitgen.Meta{App: "demo", Version: "1", Stanza: "web0"}) {
		t.Errorf("first apply = %+v, %v", s, changed)
	}
	s, changed = w.apply(name, ifaceService, map[string]godbus.Variant{
		"MainPID": godbus.MakeVariant(uint32(42)), "NRestarts": godbus.MakeVariant(uint32(2)), "Result": godbus.MakeVariant("exit-code"),
	})
	if !changed || s.MainPID != 42 || s.NRestarts != 2 || s.Result != "exit-code" || s.ActiveState != "active" {
		t.Errorf("service apply = %+v, %v", s, changed)
	}
	if _, changed = w.apply(name, ifaceService, map[string]godbus.Variant{"MainPID": godbus.MakeVariant(uint32(42))}); changed {
		t.Error("an unchanged MainPID counts as a change")
	}
	if _, changed = w.apply(name, "org.freedesktop.systemd1.Socket", map[string]godbus.Variant{}); changed {
		t.Error("another interface counts as a change")
	}
}

func TestGlobEscape(t *testing.T) {
	if got := globEscape(`keter-app-a\x20b[1]*?`); got != `keter-app-a\\x20b\[1\]\*\?` {
		t.Errorf("globEscape = %q", got)
	}
}

func TestIsDBusError(t *testing.T) {
	e := godbus.Error{Name: "org.freedesktop.systemd1.NoSuchUnit"}
	for _, err := range []error{e, &e, fmt.Errorf("wrapped: %w", e)} {
		if !isDBusError(err, "org.freedesktop.systemd1.NoSuchUnit") {
			t.Errorf("isDBusError(%v) = false", err)
		}
	}
	if isDBusError(errors.New("org.freedesktop.systemd1.NoSuchUnit"), "org.freedesktop.systemd1.NoSuchUnit") {
		t.Error("a plain error matched")
	}
	if isDBusError(nil, "x") {
		t.Error("nil matched")
	}
}
